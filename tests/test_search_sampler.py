"""Per-trial seeding of the search samplers (archc/search/sampler.py): reproducible for one seed,
distinct streams across trials and processes, and no replay on resume."""
from __future__ import annotations

import optuna
import pytest

from archc.errors import SearchError
from archc.search.sampler import SAMPLERS, TrialSeededSampler, make_sampler, trial_seed

optuna.logging.set_verbosity(optuna.logging.ERROR)


def objective(trial: optuna.Trial) -> tuple:
    x = trial.suggest_int("x", 0, 10_000)
    c = trial.suggest_categorical("c", ["a", "b", "c", "d"])
    return float(x), float(len(c))


def points(study: optuna.Study) -> list:
    return [tuple(sorted(t.params.items())) for t in study.trials]


def run(sampler, n: int, storage=None, name="s") -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler, storage=storage,
                                study_name=name, load_if_exists=True)
    study.optimize(objective, n_trials=n)
    return study


@pytest.mark.parametrize("kind", SAMPLERS)
def test_same_seed_same_points_and_trial_numbers_give_distinct_streams(kind):
    a = points(run(make_sampler(kind, 7, 4), 8))
    b = points(run(make_sampler(kind, 7, 4), 8))
    assert a == b
    assert len(set(a[:4])) == 4  # the random start; NSGA-II's crossover may later copy a parent
    assert points(run(make_sampler(kind, 8, 4), 8)) != a


def test_seeds_that_differ_by_the_trials_seen_no_longer_collide(tmp_path):
    """The CI failure this fixes: two commands on one study, seeds 1 and 2, where the second saw one
    more trial, drew identical points. Per-trial seeds depend on the trial number, not the process."""
    storage = f"sqlite:///{tmp_path}/s.db"
    first = make_sampler("tpe", 1, 10)
    second = make_sampler("tpe", 1, 10)  # even the same seed
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage, study_name="s")
    for i in range(6):  # two processes taking turns on one study
        study.sampler = first if i % 2 == 0 else second
        study.optimize(objective, n_trials=1)
    assert len(set(points(study))) == 6


def test_resume_continues_without_replaying(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    run(make_sampler("random", 3, 4), 5, storage)
    study = run(make_sampler("random", 3, 4), 5, storage)  # the same command again
    assert len(study.trials) == 10 and len(set(points(study))) == 10


def test_trial_seed_mixes_its_inputs():
    seeds = {trial_seed(s, n) for s in range(20) for n in range(20)}
    assert len(seeds) == 400  # seed + number would give 39
    assert all(0 <= s < 2**32 for s in seeds)


def test_unseeded_and_unknown():
    assert not isinstance(make_sampler("tpe", None, 4), TrialSeededSampler)
    with pytest.raises(SearchError, match="unknown sampler 'grid'; valid: tpe, nsga2, random"):
        make_sampler("grid", 1, 4)


def test_a_negative_seed_is_one_line_from_the_cli(tmp_path, capsys):
    from archc.cli import main
    code = main(["search", "--latency-ms", "1", "--seed", "-1", "--storage", f"sqlite:///{tmp_path}/s.db"])
    err = capsys.readouterr().err
    assert code == 2 and "--seed must be a non-negative integer, got -1" in err and "Traceback" not in err
