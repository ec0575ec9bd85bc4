"""nbgrader configuration: instructor sources in solutions/, student releases in labs/.

Assignment ids are the lab folder names (``01_rate_limiter`` ...). Run nbgrader from the
repository root; ``syslab check`` uses the same settings in a temporary course folder.
"""

c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.db_assignments = [
    {"name": "01_rate_limiter"},
    {"name": "03_feed"},
    {"name": "06_rag"},
    {"name": "07_llm_serving"},
    {"name": "08_training"},
    {"name": "09_gpu_scheduler"},
]
c.Exchange.assignment_dir = "."
# The release folder is the committed student version, so regenerating must overwrite it.
c.GenerateAssignment.force = True
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.Execute.timeout = 300
