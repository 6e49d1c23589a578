"""The defaults every command and the Makefile share (the Makefile reads this file's assignments).

Model facts live in the registry; these are only the choices made when a user names none.
"""

DEFAULT_MODEL = "focal-fast-s"
DEFAULT_SOC = "Ascend310P3"
WORK_DIR = "infer"
DATABIN_DIR = "infer/databin"
OM_DIR = "infer/om"
RESULT_JSON = "infer/result.json"
