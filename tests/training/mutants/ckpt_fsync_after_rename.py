"""Writes a temporary file in the checkpoint's folder and renames it onto the path, but fsyncs only
afterwards, through the new name: until then the rename can reach the disk before the data, and a power
cut leaves an empty or torn file at the path, the previous checkpoint already gone.

Expected to fail: the hidden atomic-save check of Exercise 3 (fsync of the temporary file before the rename).
"""

# %% grade_id: checkpoint
def save_checkpoint(path, *, step, model, optimizer, scheduler, loader):
    path = os.fspath(path)
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "loader": loader.state_dict(),
             "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}}
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    with open(path, "rb") as f:  # make the new checkpoint durable
        os.fsync(f.fileno())


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
