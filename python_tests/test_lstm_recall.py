"""DNILSTM trained on delayed recall (dni_kernels/recall.py): the bootstrapped SG lets
windows of 2 steps learn a 3-step dependency (nearly as well as full BPTT) that
truncated BPTT does not, for two seeds, with the documented recipe."""

from dataclasses import replace

import pytest

from dni_kernels.recall import METHODS, RecallRecipe, train_recall

SEEDS = (0, 1)
RECIPE = RecallRecipe()


def test_dni_learns_past_the_window_where_truncated_bptt_does_not(one_thread):
    acc = {m: [train_recall(m, RECIPE, seed).accuracy for seed in SEEDS] for m in METHODS}
    print("\n" + "\n".join(f"{m:>6}: {acc[m]}" for m in METHODS))
    # Measured with this recipe: tbptt 0.36–0.37, dni 0.98–0.99, bptt 1.00 (chance 0.25).
    for seed in range(len(SEEDS)):
        assert acc["dni"][seed] > 0.9
        assert acc["dni"][seed] > acc["tbptt"][seed] + 0.4
        assert acc["bptt"][seed] > 0.99


def test_recall_cli_prints_every_method(capsys, one_thread):
    from dni_kernels.__main__ import main

    main(["recall", "--sequences", "3", "--methods", "tbptt", "dni"])
    printed = capsys.readouterr().out
    assert "tbptt" in printed and "dni" in printed and "%" in printed


def test_bad_arguments_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        train_recall("rtrl", RECIPE)
    with pytest.raises(ValueError, match="delay must be in 1"):
        train_recall("dni", replace(RECIPE, delay=32))
    with pytest.raises(ValueError, match="scored_sequences"):
        train_recall("dni", replace(RECIPE, sequences=3))
