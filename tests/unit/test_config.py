"""Settings (fmnist.config): defaults < FMNIST_CONFIG file < FMNIST_* variables < overrides, typed and checked; a
setting that no longer exists is refused with what replaced it, never silently ignored."""
import json

import pytest

from fmnist.config import Settings
from fmnist.errors import InvalidValue


def test_layers_of_settings_are_typed_and_checked(tmp_path):
    cfg = tmp_path / "fmnist.json"
    cfg.write_text(json.dumps({"default_deadline_ms": 300, "pool_threads": 8}))
    s = Settings.load(environ={"FMNIST_CONFIG": str(cfg), "FMNIST_DEFAULT_DEADLINE_MS": "250"})
    assert s.default_deadline_ms == 250.0 and s.pool_threads == 8  # the variable beats the file
    assert Settings.load(environ={}).default_deadline_ms == 200.0
    assert Settings.load(environ={"FMNIST_DEFAULT_DEADLINE_MS": "0"}).default_deadline_ms == 0  # no default deadline
    with pytest.raises(InvalidValue, match="default_deadline_ms must be"):
        Settings.load(environ={"FMNIST_DEFAULT_DEADLINE_MS": "-1"})
    cfg.write_text(json.dumps({"no_such_thing": 1}))
    with pytest.raises(InvalidValue, match="unknown setting"):
        Settings.load(environ={"FMNIST_CONFIG": str(cfg)})


def test_a_retired_setting_is_refused_with_what_replaced_it(tmp_path):
    with pytest.raises(InvalidValue, match="FMNIST_QUEUE_WAIT_MS.*no longer a setting.*FMNIST_DEFAULT_DEADLINE_MS"):
        Settings.load(environ={"FMNIST_QUEUE_WAIT_MS": "50"})
    cfg = tmp_path / "fmnist.json"
    cfg.write_text(json.dumps({"queue_wait_ms": 50}))
    with pytest.raises(InvalidValue, match="queue_wait_ms .* no longer a setting"):
        Settings.load(environ={"FMNIST_CONFIG": str(cfg)})
