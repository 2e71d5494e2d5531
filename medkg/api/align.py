"""`medkg train` as Python: a knowledge-guided aligner trained from a config file."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from graphdb.uri import medkg_home
from kg.errors import MissingInputError
from kg.paths import default_data_dir
from kg.problems import ProblemLog

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A config file, or the name of a shipped one (`medkg`, `clip`, ...)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    raise MissingInputError(f"no config file {name_or_path!r}; give a .yaml path or one of: {', '.join(shipped_configs())}")


def train(config: str | Path, out: Path, data_dir: Path | None = None, overrides: list[str] | None = None,
          progress: bool = True, problems: ProblemLog | None = None, resume: bool = False):
    """Train (or resume) the run in `out` from `config` (a path or a shipped config's name) with
    `key.sub=value` overrides (`resume`: fail unless `out` holds a checkpoint); derived data (graph, mentions, image cache) is cached in $MEDKG_HOME."""
    from alignment.config import load_config
    from alignment.train import train as train_run
    from embed.runs import CHECKPOINT

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if not data_dir.is_dir():
        raise MissingInputError(f"data directory not found: {data_dir} (give --data-dir or set MEDKG_DATA_DIR; "
                                "the README says where the public datasets come from)")
    settings = load_config(config_path(config), overrides)
    if resume and not (Path(out) / CHECKPOINT).exists():
        raise MissingInputError(f"nothing to resume: {Path(out) / CHECKPOINT} does not exist")
    return train_run(settings, Path(out), data_dir, medkg_home() / "alignment", progress, problems, _version())


def _version() -> str:
    try:
        return version("medkg")
    except PackageNotFoundError:
        return "unknown"
