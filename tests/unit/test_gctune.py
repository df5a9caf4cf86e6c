"""A worker or sink freezes what start-up allocated and collects young garbage less often."""

import gc

import pytest

from streams.config import ConfigError, load_settings
from streams.infra import gctune


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_setting_defaults_to_20000_and_refuses_a_negative():
    assert load_settings({}).gc_gen0 == 20000
    assert load_settings({"TWINLEDGER_GC_GEN0": "0"}).gc_gen0 == 0
    with pytest.raises(ConfigError, match="TWINLEDGER_GC_GEN0"):
        load_settings({"TWINLEDGER_GC_GEN0": "-1"})


def test_long_running_freezes_start_up_and_raises_the_young_threshold(restore_gc):
    gctune.for_long_running(20000)
    assert gc.get_threshold()[0] == 20000
    assert gc.get_freeze_count() > 0  # no collection walks start-up's objects again
    cycle: list = []
    cycle.append(cycle)  # garbage made after start-up is still collected
    del cycle
    assert gc.collect() >= 1


def test_zero_keeps_pythons_defaults(restore_gc):
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    gctune.for_long_running(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
