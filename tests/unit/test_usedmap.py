from lifeboat.fs.usedmap import decode_runs, encode_runs, merge_runs, parse_domain_log, runs_in_window, with_edges

# captured from `partclone.extfs -D` (0.3.23) on a small ext4
DOMAIN_LOG = """# Domain logfile created by unset_name v0.3.23
# Source: t.img
# Offset: 0x00000000
# current_pos  current_status
0x0C800000     ?
#      pos        size  status
0x00000000  0x00A7E000  +
0x00A7E000  0x00000400  ?
0x00A7E400  0x020FE800  +
0x02B7CC00  0x00003800  ?
0x02B80400  0x00A74000  +
"""


def test_parse_domain_log_keeps_used_ranges():
    assert parse_domain_log(DOMAIN_LOG) == [(0, 0xA7E000), (0xA7E400, 0x20FE800), (0x2B80400, 0xA74000)]


def test_adjacent_used_ranges_merge():
    log = "0x0 0x1000 +\n0x1000 0x1000 +\n0x2000 0x1000 ?\n"
    assert parse_domain_log(log) == [(0, 0x2000)]


def test_runs_in_window_splits_runs_that_cross_windows():
    runs = [(0, 10), (15, 20), (40, 5)]
    first, i = runs_in_window(runs, 0, 0, 20)
    assert first == [(0, 10), (15, 5)] and i == 1
    second, i = runs_in_window(runs, i, 20, 40)
    assert second == [(20, 15)] and i == 2
    third, i = runs_in_window(runs, i, 40, 60)
    assert third == [(40, 5)] and i == 3


def test_edges_are_added_and_merged():
    assert with_edges([(4096, 100)], 10_000_000, edge=1 << 20) == [(0, 1 << 20), (10_000_000 - (1 << 20), 1 << 20)]
    assert merge_runs([(0, 10)], [(5, 10), (30, 1)]) == [(0, 15), (30, 1)]


def test_run_encoding_round_trips():
    runs = [(0, 4096), (1 << 40, 123)]
    assert decode_runs(encode_runs(runs)) == runs


def test_data_windows_skip_empty_windows_and_split_runs_at_window_edges():
    from lifeboat.fs.usedmap import data_windows

    runs = [(10, 5), (90, 20), (350, 10)]  # the second run crosses the edge at 100; windows 2 hold nothing
    assert list(data_windows(runs, 100)) == [
        (0, [(10, 5), (90, 10)], 15),
        (1, [(100, 10)], 10),
        (3, [(350, 10)], 10),
    ]
    assert list(data_windows([], 100)) == []
