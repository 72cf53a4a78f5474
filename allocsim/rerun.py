"""``allocsim run --from RUN_DIR/manifest.json``: the experiment a run directory recorded.

A run's ``manifest.json`` holds its effective config (``config``: every key with its
value, defaults filled in, paths absolute) and seed; validated again, it gives the same
experiment, so the rerun writes the same trace, byte for byte, with the same allocsim,
Python and library versions (the manifest's ``versions`` says which). A rerun whose
versions differ is allowed and said on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from simcore.config.override import scalar_text, set_value
from simcore.config.types import ExperimentConfig
from simcore.errors import ConfigError
from workloads.registry import experiment_from_data


def load_manifest_experiment(path: Path, overrides: Sequence[tuple[str, object]] = (),
                             ) -> ExperimentConfig:
    """The experiment recorded in a run's ``manifest.json`` (a run directory works too).

    Raises:
        ConfigError: Not a manifest with a ``config`` mapping, or the config no longer
            validates (the message names the manifest and the key path).
    """
    if path.is_dir():
        path = path / "manifest.json"
    source = str(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "<file>", "a run directory's manifest.json",
                          getattr(exc, "strerror", None) or str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(source, "<json>", "a run directory's manifest.json (JSON)",
                          f"{exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:  # a 4,301-digit number, 100,000 nested [
        raise ConfigError(source, "<json>", "a run directory's manifest.json (JSON)",
                          str(exc).split(";")[0]) from None
    doc = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(doc, dict):
        raise ConfigError(source, "config", "the effective config a run recorded", doc)
    _warn_versions(manifest)
    origins = {}
    for key_path, value in overrides:
        arg = f"--set {key_path}={scalar_text(value)}"
        doc = set_value(doc, key_path, value, arg)
        origins[key_path] = (arg, key_path)
    return experiment_from_data(doc, source, origins)


def _warn_versions(manifest: dict[str, object]) -> None:
    from allocsim.run import _versions

    recorded = manifest.get("versions")
    if not isinstance(recorded, dict):
        return
    now = _versions()
    changed = [f"{k} {recorded[k]} -> {now[k]}" for k in sorted(now)
               if k in recorded and recorded[k] != now[k]]
    if changed:
        print("allocsim: note: versions differ from the recorded run's (" + ", ".join(changed)
              + "): the trace may differ", file=sys.stderr)
