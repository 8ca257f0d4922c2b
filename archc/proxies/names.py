"""The proxies' names, the default objective and what each objective's score means: without torch, so that
`archc search --help` and `archc proxies --help` list them fast (``registry`` maps each name to its function)."""

#: every zero-cost proxy, in the order tables list them
NAMES = ("params", "synflow", "naswot", "zico", "grad_norm", "jacob_cov")

#: measured 2026-11-21 over seeds 0-2: params mean tau-b 0.946 / rho 0.986; zico ties on tau-b (0.946,
#: 0.977 at seed 0 only) with rho 0.981; synflow 0.780; naswot 0.636; grad_norm 0.398; jacob_cov 0.160
DEFAULT = "params"


def objective_label(name: str) -> str:
    """What a search or ablation score means, for axes, tables and optuna-dashboard's metric names."""
    if name == "params":
        return "params (M params; default proxy, higher = bigger model)"
    if name == "train":
        return "train (val top-1 %, brief training)"
    if name == "supernet":
        return "supernet (val top-1 %, inherited weights)"
    return f"{name} (zero-cost proxy score, higher = predicted better)"


def check_name(name: str) -> str:
    """``name`` if it is a zero-cost proxy, else one line with the valid names."""
    from ..errors import ArchcError, did_you_mean
    if name not in NAMES:
        raise ArchcError(f"unknown proxy '{name}'{did_you_mean(name, NAMES)}; valid: {', '.join(NAMES)}")
    return name
