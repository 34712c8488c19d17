"""The experiment runner: a tiny grid, interrupted and resumed without redoing finished cells."""

from __future__ import annotations

import json

import pytest
import torch

from chipnet_zoo.cli import main
from chipnet_zoo.errors import RunError
from chipnet_zoo.experiments import ExperimentConfig, grid, read_results, run_experiment

TINY = {"name": "tiny", "arch": "resnet8", "teachers": ["animal-mnist"], "students": ["mnist5k"],
        "budget_type": "flops", "budgets": [0.25], "methods": ["dense", "l1", "slimming", "transfer-scratch"],
        "seeds": [0], "recipe": "tiny", "epochs": {"train": 1, "prune": 1, "finetune": 1},
        "max_samples": 96, "data_seed": 0}


class Interrupt(Exception):
    pass


def test_grid_shares_and_dedupes():
    cfg = ExperimentConfig.from_dict({**TINY, "budgets": [0.25, 0.125], "seeds": [0, 1],
                                      "methods": ["dense", "chipnet-direct", "transfer-finetune", "random"]})
    cells = grid(cfg)
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids))
    assert sum(c.method == "dense" for c in cells) == 2  # one per (student, seed), not per budget
    assert len(cells) == 2 * (1 + 2 * 3)
    with pytest.raises(RunError, match="unknown methods"):
        ExperimentConfig.from_dict({**TINY, "methods": ["magic"]})
    with pytest.raises(RunError, match="unknown keys"):
        ExperimentConfig.from_dict({**TINY, "budgetz": [0.1]})


def test_interrupted_experiment_resumes_without_redoing_cells(tmp_path):
    cfg = ExperimentConfig.from_dict(TINY)
    out = tmp_path / "exp"
    seen: list[str] = []

    def boom_on_third(cell):
        seen.append(cell.id)
        if len(seen) == 3:
            raise Interrupt(cell.id)

    with pytest.raises(Interrupt):
        run_experiment(cfg, out=out, on_cell=boom_on_third)
    first = read_results(out)
    assert [r["cell"] for r in first] == seen[:2]
    dense_weights = out / "runs" / "dense-mnist5k-s0" / "weights.safetensors"
    stamp = dense_weights.stat().st_mtime_ns

    resumed: list[str] = []
    summary = run_experiment(cfg, out=out, max_cells=1, on_cell=lambda c: resumed.append(c.id))
    assert resumed == [seen[2]] and summary["done"] == 3 and summary["total"] == 4
    assert "PARTIAL RESULTS: 3 of 4" in (out / "results.md").read_text()

    rc = main(["experiment", str(_write_yaml(tmp_path, cfg)), "--out", str(out)])  # the CLI finishes it
    assert rc == 0
    rows = read_results(out)
    assert len(rows) == 4 and len({r["cell"] for r in rows}) == 4
    assert rows[:2] == first  # finished cells were not redone
    assert dense_weights.stat().st_mtime_ns == stamp  # the shared dense student was trained once
    for r in rows:
        if r["method"] != "dense":
            assert r["ratios"]["flops"] <= 0.25 + 1e-12 and 0.25 - r["ratios"]["flops"] <= 0.01
    table = (out / "results.md").read_text()
    assert "PARTIAL" not in table and "| l1 |" in table and "| transfer-scratch (animal-mnist) |" in table
    assert (out / "plot-mnist5k.png").stat().st_size > 1000
    assert len((out / "results.csv").read_text().splitlines()) == 5
    assert len(json.loads((out / "results.json").read_text())) == 4
    _check_zoo_export(tmp_path, out)


def _check_zoo_export(tmp_path, out):
    """export_zoo -> a registry folder with runnable models; MaskRegistry() falls back to the built-in zoo."""
    import torch

    from chipnet_zoo.experiments import export_zoo
    from chipnet_zoo.registry import MaskRegistry
    from chipnet_zoo.registry import mask_registry as registry_module

    zoo, cards = tmp_path / "zoo", tmp_path / "cards"
    entries = export_zoo(out, zoo, cards=cards)
    assert [e.key for e in entries] == ["resnet8/mnist5k/flops-1"]  # the dense student (no chipnet cells here)
    assert (cards / "resnet8__mnist5k__flops-1.md").read_text().startswith("# Recipe card")
    model = MaskRegistry(zoo).pull_model("resnet8/mnist5k/flops-1")
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    old = registry_module.BUILTIN_ZOO
    registry_module.BUILTIN_ZOO = zoo
    try:
        assert MaskRegistry().pull("resnet8/mnist5k/flops-1").metadata["method"] == "dense"  # from the zoo
        with pytest.raises(Exception, match="read-only"):
            MaskRegistry.builtin().push(MaskRegistry(zoo).pull("resnet8/mnist5k/flops-1"), overwrite=True)
        with pytest.raises(FileNotFoundError):
            MaskRegistry().pull("resnet8/mnist5k/flops-0.5")
    finally:
        registry_module.BUILTIN_ZOO = old


def _write_yaml(tmp_path, cfg: ExperimentConfig):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.to_dict().items() if k in TINY}))
    return path


def test_shipped_configs_parse():
    from chipnet_zoo.experiments import list_configs

    assert list_configs() == ["offline", "offline-poor-animal-mnist", "offline-poor-mnist5k"]
    for name in list_configs():
        cfg = ExperimentConfig.load(name)
        assert cfg.teachers and cfg.students and len(cfg.seeds) >= 3
        assert set(cfg.methods) == {"dense", "chipnet-direct", "transfer-scratch", "transfer-finetune", "random",
                                    "l1", "slimming", "random-scratch"}
    grid_cfg = ExperimentConfig.load("offline")
    for student, teacher in (("mnist5k", "animal-mnist"), ("animal-mnist", "mnist5k")):
        poor = ExperimentConfig.load(f"offline-poor-{student}")
        # the grid's protocol and teacher, the student capped: its teacher runs are the grid's own
        assert (poor.teachers, poor.students) == ([teacher], [student])
        assert poor.train_cap(student) == 500 and poor.train_cap(teacher) is None
        assert (poor.recipe, poor.epochs, poor.max_samples, poor.data_seed) == (
            grid_cfg.recipe, grid_cfg.epochs, grid_cfg.max_samples, grid_cfg.data_seed)


def test_grid_mixes_budget_kinds():
    cfg = ExperimentConfig.from_dict({**TINY, "budgets": ["flops:0.25", "params:0.0625", 0.125],
                                      "methods": ["dense", "chipnet-direct", "random"]})
    assert [str(b) for b in cfg.budgets] == ["flops:0.25", "params:0.0625", "flops:0.125"]
    cells = grid(cfg)
    assert {str(c.budget) for c in cells if c.method == "random"} == {"flops:0.25", "params:0.0625", "flops:0.125"}
    assert len({c.id for c in cells}) == len(cells) == 1 + 2 * 3
    assert cfg.to_dict()["budgets"] == ["flops:0.25", "params:0.0625", "flops:0.125"]
    with pytest.raises(Exception, match="budget"):
        ExperimentConfig.from_dict({**TINY, "budgets": ["latency-ish:0.5"]})


def test_paired_interval_is_the_t_interval():
    from chipnet_zoo.experiments import paired_interval

    mean, low, high = paired_interval([0.02, 0.04, 0.03])
    half = 4.303 * 0.01 / 3 ** 0.5  # t(0.975, 2 df) * sd / sqrt(n)
    assert mean == pytest.approx(0.03) and low == pytest.approx(0.03 - half) and high == pytest.approx(0.03 + half)
    assert paired_interval([0.5])[0] == 0.5


def test_report_pairs_each_method_with_the_best_baseline_per_seed():
    from chipnet_zoo.experiments import markdown_table, paired_comparisons

    def row(method, budget, seed, acc, teacher="-"):
        kind, value = budget.split(":")
        return {"cell": f"{method}{budget}{seed}", "teacher": teacher, "student": "mnist5k", "method": method,
                "budget_type": kind, "budget": float(value), "seed": seed, "test_accuracy": acc}

    rows = [row("dense", "flops:1", s, 0.95) for s in range(3)]
    for s, (ch, rnd, l1) in enumerate([(0.90, 0.85, 0.88), (0.91, 0.86, 0.80), (0.89, 0.84, 0.86)]):
        rows += [row("chipnet-direct", "flops:0.125", s, ch), row("random", "flops:0.125", s, rnd),
                 row("l1", "flops:0.125", s, l1), row("chipnet-direct", "params:0.25", s, ch),
                 row("random", "params:0.25", s, ch)]
    paired = paired_comparisons(rows, "mnist5k")
    assert [p["budget"] for p in paired] == ["flops:0.125", "params:0.25"]
    assert paired[0]["best_baseline"] == "random"  # random's mean 0.85 > l1's 0.847
    assert paired[0]["vs_best"] == pytest.approx([0.05, 0.05, 0.05])
    cfg = ExperimentConfig.from_dict({**TINY, "budgets": ["flops:0.125"]})
    table = markdown_table(rows, cfg, total=len(rows))
    assert "| flops:0.125 | chipnet-direct | random | +5.0 [+5.0, +5.0] (n=3) | +5.0 [+5.0, +5.0] (n=3) | - |" in table


def test_report_pairs_transfer_scratch_with_its_schedule_matched_control():
    from chipnet_zoo.experiments import markdown_table, paired_comparisons

    def row(method, seed, acc, teacher="-"):
        return {"cell": f"{method}{seed}{teacher}", "teacher": teacher, "student": "mnist5k", "method": method,
                "budget_type": "flops", "budget": 0.125, "seed": seed, "test_accuracy": acc}

    rows = []
    for s, (scratch, control, rnd) in enumerate([(0.90, 0.89, 0.80), (0.92, 0.90, 0.81), (0.91, 0.91, 0.79)]):
        rows += [row("transfer-scratch", s, scratch, teacher="animal-mnist"), row("random-scratch", s, control),
                 row("random", s, rnd)]
    paired = paired_comparisons(rows, "mnist5k")
    assert [p["method"] for p in paired] == ["transfer-scratch (animal-mnist)"]  # the control is not a method
    assert paired[0]["control"] == "random-scratch"
    assert paired[0]["vs_control"] == pytest.approx([0.01, 0.02, 0.0])
    assert paired[0]["vs_random"] == pytest.approx([0.10, 0.11, 0.12])
    cfg = ExperimentConfig.from_dict({**TINY, "budgets": ["flops:0.125"]})
    assert "+1.0 [-1.5, +3.5] (n=3) (random-scratch) |" in markdown_table(rows, cfg, total=len(rows))


def test_scoreboard_counts_budgets_by_sign_and_interval():
    from chipnet_zoo.experiments import markdown_table, scoreboard

    def row(method, budget, seed, acc):
        return {"cell": f"{method}{budget}{seed}", "teacher": "-", "student": "mnist5k", "method": method,
                "budget_type": "flops", "budget": budget, "seed": seed, "test_accuracy": acc}

    rows = []
    for s in range(3):  # 0.25: clearly above random; 0.125: below on average, interval spans 0
        rows += [row("chipnet-direct", 0.25, s, 0.90 + 0.01 * s), row("random", 0.25, s, 0.85),
                 row("chipnet-direct", 0.125, s, [0.80, 0.79, 0.82][s]), row("random", 0.125, s, 0.81)]
    board = scoreboard(rows, "mnist5k")
    assert [(b["method"], b["reference"]) for b in board] == [("chipnet-direct", "best baseline"),
                                                              ("chipnet-direct", "random")]
    assert board[0]["budgets"] == 2 and board[0]["mean_at_least_0"] == 1
    assert board[0]["interval_above_0"] == 1 and board[0]["interval_below_0"] == 0
    assert [b for b, _ in board[0]["below"]] == ["flops:0.125"] and board[0]["below"][0][1] == pytest.approx(-0.667,
                                                                                                           abs=1e-3)
    cfg = ExperimentConfig.from_dict({**TINY, "budgets": ["flops:0.25", "flops:0.125"]})
    assert "| chipnet-direct | best baseline | 2 | 1 | 1 | 0 | flops:0.125 (-0.7) |" in markdown_table(rows, cfg, 12)
    one_seed = [r for r in rows if r["seed"] == 0]  # no interval at n=1: said, not counted as spanning 0
    single = scoreboard(one_seed, "mnist5k")[0]
    assert single["single_seed"] == 2 and single["interval_above_0"] == single["interval_below_0"] == 0
    assert "| chipnet-direct | best baseline | 2 (2 with n=1: no interval) |" in markdown_table(one_seed, cfg, 4)


def test_lanes_split_the_grid_by_student_and_seed():
    from chipnet_zoo.experiments import lane_of

    cfg = ExperimentConfig.from_dict({**TINY, "students": ["mnist5k", "animal-mnist"], "seeds": [0, 1, 2],
                                      "teachers": ["animal-mnist", "mnist5k"]})
    cells = grid(cfg)
    lanes = [[c for c in cells if lane_of(cfg, c, 2) == k] for k in range(2)]
    assert sorted(c.id for lane in lanes for c in lane) == sorted(c.id for c in cells)
    pairs = [{(c.student, c.seed) for c in lane} for lane in lanes]
    assert not pairs[0] & pairs[1]  # a (student, seed) pair never spans two lanes
    assert {len({(c.student, c.seed) for c in lane}) for lane in lanes} == {3}
    # each lane takes each student in turn (one student's costlier cells do not all land on one lane) ...
    assert [sorted(p) for p in pairs] == [[("animal-mnist", 1), ("mnist5k", 0), ("mnist5k", 2)],
                                          [("animal-mnist", 0), ("animal-mnist", 2), ("mnist5k", 1)]]
    # ... and the two students of a seed run side by side
    assert all(len({lane_of(cfg, c, 2) for c in cells if c.seed == seed}) == 2 for seed in cfg.seeds)
    with pytest.raises(SystemExit):
        main(["experiment", "offline", "--lane", "2/2"])


def test_transfer_scratch_gets_the_dense_training_schedule(tmp_path):
    import yaml

    from chipnet_zoo.recipes import load_recipe, phase_config
    from chipnet_zoo.runs import Run

    recipe = load_recipe("tiny")  # train 2 epochs at lr 0.05; fine-tune 1 epoch at lr 0.02
    recipe["finetune"] = {**recipe["finetune"], "epochs": 1}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    config = {k: v for k, v in TINY.items() if k != "epochs"}
    cfg = ExperimentConfig.from_dict({**config, "methods": ["transfer-scratch"], "recipe": str(tmp_path / "r.yaml")})
    summary = run_experiment(cfg, out=tmp_path / "exp")
    (row,) = summary["rows"]
    phase = Run(row["run_dir"]).config()["recipe"]["phase"]
    train = phase_config(recipe, "train")
    assert (phase["epochs"], phase["lr"]) == (train["epochs"], train["lr"]) == (2, 0.05)


class _ScoredCells:
    """A workspace whose cells score by a fixed rule (the runner's scheduling is under test, not training):
    at flops 0.125 the random method's accuracy swings by seed; everything else is steady."""

    def __init__(self, cfg, out):
        self.ran: list[str] = []

    def run_cell(self, cell):
        self.ran.append(cell.id)
        swing = 0.10 * (cell.seed % 2) if (cell.method == "random" and cell.budget.value == 0.125) else 0.0
        return {"test_accuracy": 0.8 + swing + 0.001 * cell.seed, "ratios": {"flops": cell.budget.value}}


def test_extra_seeds_only_where_the_spread_over_seeds_is_large(tmp_path):
    import threading

    from chipnet_zoo.budget import Budget
    from chipnet_zoo.experiments import lane_of, noisy_pairs

    cfg = ExperimentConfig.from_dict({**TINY, "students": ["mnist5k", "animal-mnist"],
                                      "teachers": ["animal-mnist", "mnist5k"], "budgets": [0.25, 0.125],
                                      "methods": ["dense", "random", "transfer-scratch"], "seeds": [0, 1, 2],
                                      "extra_seeds": [3, 4], "extra_seeds_above_std": 0.03})
    workspaces: list[_ScoredCells] = []

    def make(c, out):
        workspaces.append(_ScoredCells(c, out))
        return workspaces[-1]

    errors: list[BaseException] = []

    def lane(k: int) -> None:
        try:
            run_experiment(cfg, out=tmp_path, workspace=make, lane=(k, 2), poll_seconds=0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    lanes = [threading.Thread(target=lane, args=(k,), daemon=True) for k in range(2)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in lanes)
    rows = read_results(tmp_path)
    base = {c.id for c in grid(cfg)}
    extra = {r["cell"] for r in rows} - base
    assert base <= {r["cell"] for r in rows} and len(rows) == len({r["cell"] for r in rows})  # nothing twice
    assert noisy_pairs(cfg, rows) == {("mnist5k", Budget("flops", 0.125)), ("animal-mnist", Budget("flops", 0.125))}
    # the extra seeds ran every method at the noisy budget (and the dense models), nothing at flops 0.25
    assert {c.split("|")[2] for c in extra} == {"flops:0.125", "flops:1"} and {c[-2:] for c in extra} == {"s3", "s4"}
    assert {c.split("|")[1] for c in extra} == {"dense", "random", "transfer-scratch"}
    # extra seeds are split between the lanes by seed
    ran = [set(w.ran) for w in workspaces]
    assert all(any(c.endswith("s3") for c in lane) != any(c.endswith("s4") for c in lane) for lane in ran)
    assert all(lane_of(cfg, c, 2) in (0, 1) for c in grid(cfg, seeds=[3, 4]))
    table = (tmp_path / "results.md").read_text()
    assert "PARTIAL" not in table and "seeds 3, 4 added where" in table and "mnist5k flops:0.125" in table
    with pytest.raises(RunError, match="overlap"):
        ExperimentConfig.from_dict({**TINY, "seeds": [0, 1], "extra_seeds": [1]})


def test_a_lane_whose_peer_never_comes_stops_waiting(tmp_path):
    cfg = ExperimentConfig.from_dict({**TINY, "students": ["mnist5k", "animal-mnist"],
                                      "teachers": ["animal-mnist", "mnist5k"], "methods": ["dense", "random"],
                                      "seeds": [0, 1], "extra_seeds": [2]})
    # lane 0 of 2 owns the extra seed 2 and waits for lane 1's base cells, which nobody runs
    summary = run_experiment(cfg, out=tmp_path, workspace=_ScoredCells, lane=(0, 2), poll_seconds=0.01,
                             stall_seconds=0.2)
    assert summary["done"] < summary["total"]
    # lane 1 owns no extra seed: it finishes its base cells and does not wait at all
    summary = run_experiment(cfg, out=tmp_path, workspace=_ScoredCells, lane=(1, 2), poll_seconds=0.01,
                             stall_seconds=3600)
    assert {c.id for c in grid(cfg)} <= {r["cell"] for r in read_results(tmp_path)}


def test_latency_budgets_are_refused_in_experiment_configs():
    with pytest.raises(RunError, match="latency"):
        ExperimentConfig.from_dict({**TINY, "budgets": ["latency:0.5"]})


@pytest.mark.slow
def test_random_scratch_trains_the_students_random_mask_from_scratch_like_transfer_scratch(tmp_path):
    """transfer-scratch's control: the student's own random mask (the one `random` fine-tunes), slimmed and
    trained from random init with the same (dense) schedule as transfer-scratch."""
    from chipnet_zoo.mask import Mask
    from chipnet_zoo.runs import Run

    config = {k: v for k, v in TINY.items() if k != "epochs"}
    cfg = ExperimentConfig.from_dict({**config, "methods": ["random", "random-scratch", "transfer-scratch"]})
    summary = run_experiment(cfg, out=tmp_path / "exp")
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["random-scratch"]["teacher"] == "-" and rows["transfer-scratch"]["teacher"] == "animal-mnist"
    scratch, control = Run(rows["transfer-scratch"]["run_dir"]), Run(rows["random-scratch"]["run_dir"])
    phase = lambda run: {k: run.config()["recipe"]["phase"][k] for k in ("epochs", "lr")}  # noqa: E731
    assert phase(control) == phase(scratch)
    assert control.config()["weights_file"] is None  # from random init
    # the same random mask as the `random` cell fine-tunes
    random_mask = Mask.load(Run(rows["random"]["run_dir"]).config()["mask_file"])
    assert torch.equal(Mask.load(control.file("mask.safetensors")).keep_vector(), random_mask.keep_vector())
    assert "| random-scratch |" in summary["table"]


@pytest.mark.slow
def test_shared_runs_reuse_another_experiments_dense_and_pruning_runs(tmp_path):
    from chipnet_zoo.errors import ResumeMismatchError
    from chipnet_zoo.experiments import Workspace

    base = {**TINY, "methods": ["dense", "chipnet-direct"]}
    run_experiment(ExperimentConfig.from_dict(base), out=tmp_path / "a")
    shared = tmp_path / "a" / "runs"
    stamps = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in shared.iterdir()
              if p.name.startswith(("dense-", "prune-"))}
    assert sorted(stamps) == ["dense-mnist5k-s0", "prune-mnist5k-flops-0.25-s0"]

    longer = ExperimentConfig.from_dict({**base, "epochs": {**base["epochs"], "finetune": 2}})
    summary = run_experiment(longer, out=tmp_path / "b",
                             workspace=lambda cfg, out: Workspace(cfg, out, shared_runs=shared))
    assert summary["done"] == 2
    assert sorted(p.name for p in (tmp_path / "b" / "runs").iterdir()) == ["direct-mnist5k-flops-0.25-s0"]
    assert {name: (shared / name / "metrics.json").stat().st_mtime_ns for name in stamps} == stamps  # not redone
    direct = json.loads((tmp_path / "b" / "runs" / "direct-mnist5k-flops-0.25-s0" / "metrics.json").read_text())
    assert direct["epochs_done"] == 2

    other_prune = ExperimentConfig.from_dict({**base, "epochs": {**base["epochs"], "prune": 2}})
    with pytest.raises(ResumeMismatchError):  # a shared run made with other options is not silently reused
        run_experiment(other_prune, out=tmp_path / "c",
                       workspace=lambda cfg, out: Workspace(cfg, out, shared_runs=shared))


@pytest.mark.slow
def test_a_data_poor_student_takes_its_own_runs_and_the_teachers_from_the_shared_folder(tmp_path):
    from chipnet_zoo.experiments import Workspace

    teacher_cfg = ExperimentConfig.from_dict({**TINY, "students": ["animal-mnist"], "methods": ["dense", "chipnet-direct"]})
    run_experiment(teacher_cfg, out=tmp_path / "grid")
    shared = tmp_path / "grid" / "runs"
    stamps = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in shared.iterdir()}
    poor = ExperimentConfig.from_dict({**TINY, "methods": ["dense", "transfer-finetune"], "train_samples": {"mnist5k": 40}})
    assert poor.train_cap("mnist5k") == 40 and poor.train_cap("animal-mnist") is None
    summary = run_experiment(poor, out=tmp_path / "poor",
                             workspace=lambda cfg, out: Workspace(cfg, out, shared_runs=shared))
    assert summary["done"] == 2
    # the teacher's runs are reused as they were; the capped student's dense run has a name of its own there
    assert {name: (shared / name / "metrics.json").stat().st_mtime_ns for name in stamps} == stamps
    assert sorted(p.name for p in shared.iterdir()) == sorted([*stamps, "dense-mnist5k-n40-s0"])
    dense = json.loads((shared / "dense-mnist5k-n40-s0" / "config.json").read_text())
    assert dense["resolved"]["data_kwargs"]["train_samples"] == 40
    student = json.loads((tmp_path / "poor" / "runs" / "transfer-finetune-animal-mnist-mnist5k-flops-0.25-s0"
                          / "config.json").read_text())
    sizes = student["dataset"]["split_info"]["sizes"]
    full = json.loads((shared / "dense-animal-mnist-s0" / "config.json").read_text())["dataset"]["split_info"]
    assert sizes["train"] == 40 and full["sizes"]["train"] == 96  # the cap applies to the student alone
    assert sizes["test"] == round(1000 * 96 / 3500)  # max_samples still shrinks val/test; train_samples does not


def test_experiment_cli_takes_shared_runs(tmp_path, capsys):
    out = tmp_path / "exp"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({**TINY, "methods": ["dense"], "train_samples": 40}))
    assert main(["experiment", str(cfg), "--out", str(out), "--shared-runs", str(tmp_path / "shared")]) == 0
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["dense-mnist5k-n40-s0"]
    assert not (out / "runs").exists()

