"""The defaults every command and the Makefile share (the Makefile reads this file's assignments).

Model facts live in the registry; these are only the choices made when a user names none.
"""

DEFAULT_MODEL = "focal-fast-s"
DEFAULT_SOC = "Ascend310P3"
WORK_DIR = "infer"
DATABIN_DIR = "infer/databin"
OM_DIR = "infer/om"
RESULT_JSON = "infer/result.json"

# Thresholds: each is spelled here only; the CLI, the library defaults and the Makefile read it.
PRECISION_SAMPLES = 64          # images the fp16 check runs (make precision SAMPLES=…)
PRECISION_MIN_COSINE = 0.999    # fp16 is safe only if every sample's logits keep this cosine to fp32
PRECISION_MIN_TOP1 = 99.0       # … and at least this % of samples keep their fp32 top-1 class
PRECISION_MAX_RUNS = 150        # emulated runs the keep-list search may make
COMPARE_MIN_COSINE = 0.99       # compare: an image whose cosine to the reference is lower fails

# Ray runs (focalinfer infer/eval --ray; focalinfer.infer.ray_exec).
RAY_ACTOR_RESTARTS = 3          # times Ray restarts an actor whose process or node died (and retries its batch)
RAY_BATCHES_IN_FLIGHT = 2       # batches sent ahead to each actor: one runs while the next one travels
RAY_CONNECT_TIMEOUT_S = 10       # a cluster address that does not accept a connection by then is refused
RAY_CHECK_TIMEOUT_S = 120       # a node that has not answered the file check by then stops the run
RAY_PLACE_TIMEOUT_S = 600       # actors Ray has not placed by then (no free NPU / CPU) stop the run
