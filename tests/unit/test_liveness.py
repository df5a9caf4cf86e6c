"""The worker's liveness rules: offsets never folded (gaps) and the stalled-agent watchdog."""

from streams.liveness import Gap, OffsetTracker, Watchdog


def test_dense_offsets_have_no_gap():
    t = OffsetTracker()
    t.expect(0, 10)
    assert [t.observe(0, o) for o in range(10, 15)] == [None] * 5
    assert t.next_offset[0] == 15


def test_offsets_that_jump_forward_are_a_gap_naming_the_missing_range():
    t = OffsetTracker()
    t.expect(2, 100)
    assert t.observe(2, 100) is None
    gap = t.observe(2, 140)
    assert gap == Gap(2, 101, 139) and gap.count == 39
    assert t.observe(2, 141) is None


def test_first_offset_after_assignment_past_the_committed_one_is_a_gap():
    t = OffsetTracker()
    t.expect(1, 50)  # the group committed 50; the client reset to a later log start
    assert t.observe(1, 80) == Gap(1, 50, 79)


def test_redelivery_is_no_gap_and_does_not_move_the_position_back():
    t = OffsetTracker()
    for o in range(0, 20):
        t.observe(0, o)
    assert t.observe(0, 5) is None
    assert t.next_offset[0] == 20
    assert t.observe(0, 20) is None


def test_an_expectation_arriving_after_the_first_batch_does_not_override_it():
    t = OffsetTracker()
    t.observe(0, 7)
    t.expect(0, 3)
    assert t.next_offset[0] == 8


def test_partition_without_baseline_starts_where_it_is_first_seen():
    t = OffsetTracker()
    assert t.observe(3, 1000) is None
    assert t.observe(3, 1001) is None


def test_revoked_partition_is_forgotten():
    t = OffsetTracker()
    t.observe(0, 9)
    t.forget(0)
    t.expect(0, 100)
    assert t.observe(0, 100) is None


def test_log_start_past_the_position_is_a_gap_once_confirmed():
    t = OffsetTracker()
    t.expect(0, 40)
    # First sighting: the consumer may still hold fetched records below the start.
    assert t.check_log_start(0, 90) is None
    assert t.check_log_start(0, 90) == Gap(0, 40, 89)
    assert t.next_offset[0] == 90
    assert t.check_log_start(0, 90) is None


def test_log_start_gap_is_not_reported_when_the_agent_moved_in_between():
    t = OffsetTracker()
    t.expect(0, 40)
    assert t.check_log_start(0, 90) is None
    for o in range(40, 95):
        t.observe(0, o)  # the buffered records were folded after all
    assert t.check_log_start(0, 90) is None


def test_lag_counts_from_the_position_and_never_below_the_log_start():
    t = OffsetTracker()
    t.observe(0, 9)                      # next 10
    ends = {0: 25, 1: 30, 2: 5}
    committed = {1: 20, 2: None}
    assert t.lag(ends, committed) == 15 + 10 + 5
    assert t.lag(ends, committed, {0: 0, 1: 28, 2: 5}) == 15 + 2 + 0


def test_watchdog_is_ok_while_events_are_taken():
    w = Watchdog(stall_after=10, grace=20)
    for now in range(0, 100, 5):
        w.progressed(now)
        assert w.check(lag=500, now=now + 1) == "ok"


def test_watchdog_says_stalled_then_exit_when_records_wait_and_nothing_is_taken():
    w = Watchdog(stall_after=10, grace=20)
    w.progressed(0)
    assert w.check(lag=3, now=9) == "ok"
    assert w.check(lag=3, now=10) == "stalled"
    assert w.check(lag=3, now=29) == "stalled"
    assert w.check(lag=3, now=30) == "exit"


def test_watchdog_idle_worker_without_lag_is_not_stalled_and_time_counts_from_new_records():
    w = Watchdog(stall_after=10, grace=20)
    w.progressed(0)
    assert w.check(lag=0, now=1000) == "ok"
    # records arrive at ~1000: the agent has stall_after seconds from then
    assert w.check(lag=7, now=1005) == "ok"
    assert w.check(lag=7, now=1011) == "stalled"


def test_watchdog_recovers_when_the_agent_resumes():
    w = Watchdog(stall_after=10, grace=20)
    w.progressed(0)
    assert w.check(lag=3, now=15) == "stalled"
    w.progressed(16)
    assert w.check(lag=3, now=17) == "ok"
    assert w.stalled_since is None


def test_watchdog_off():
    w = Watchdog(stall_after=0, grace=0)
    assert w.check(lag=10**6, now=10**6) == "ok"
