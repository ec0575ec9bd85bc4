"""Writes the temporary file with tempfile.mkstemp() and no dir=, so it lands in /tmp (or $TMPDIR), then
renames it onto the path: across folders, and across filesystems in production (EXDEV, or a copy that is
not atomic). It flushes and fsyncs, and leaves nothing behind in the checkpoint's folder.

Expected to fail: the hidden atomic-save check of Exercise 3 (the rename must stay in the checkpoint's folder).
"""

# %% grade_id: checkpoint
def save_checkpoint(path, *, step, model, optimizer, scheduler, loader):
    path = os.fspath(path)
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "loader": loader.state_dict(),
             "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}}
    fd, tmp = tempfile.mkstemp(suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_checkpoint(path, *, model, optimizer, scheduler, loader):
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    loader.load_state_dict(state["loader"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    return state["step"]
