"""A checkpoint cut off mid-write (a crash, SIGKILL, a full disk) is never resumed from."""

from __future__ import annotations

from retrain.core.run_dir import RunDir


def make(tmp_path, *names: str) -> RunDir:
    run_dir = RunDir(tmp_path)
    for name in names:
        (run_dir.checkpoints_dir / name).mkdir(parents=True)
    return run_dir


def test_folders_past_the_marker_are_incomplete_and_set_aside_on_resume(tmp_path):
    run_dir = make(tmp_path, "checkpoint-1", "checkpoint-2", "checkpoint-3")
    run_dir.mark_checkpoint_complete(2)
    assert [p.name for p in run_dir.checkpoints()] == ["checkpoint-1", "checkpoint-2"]
    assert run_dir.latest_checkpoint().name == "checkpoint-2"
    assert [p.name for p in run_dir.incomplete_checkpoints()] == ["checkpoint-3"]
    run_dir.set_aside_after(2)
    assert not (run_dir.checkpoints_dir / "checkpoint-3").exists()
    (moved,) = (run_dir.checkpoints_dir / "incomplete").iterdir()
    assert moved.name.startswith("checkpoint-3-")  # kept, not deleted
    assert run_dir.latest_checkpoint().name == "checkpoint-2"


def test_verl_folders_follow_verls_own_marker(tmp_path):
    run_dir = make(tmp_path, "global_step_2", "global_step_4")
    (run_dir.checkpoints_dir / "latest_checkpointed_iteration.txt").write_text("2")
    assert run_dir.latest_checkpoint().name == "global_step_2"


def test_verl_folders_without_verls_marker_are_partial(tmp_path):
    run_dir = make(tmp_path, "global_step_1")
    assert run_dir.latest_checkpoint() is None


def test_a_first_checkpoint_cut_off_is_not_complete_once_the_run_marked_zero(tmp_path):
    run_dir = make(tmp_path)
    run_dir.mark_checkpoint_complete(0)  # what the TRL backend does when a run starts
    (run_dir.checkpoints_dir / "checkpoint-1").mkdir()  # then the disk filled up mid-save
    assert run_dir.latest_checkpoint() is None


def test_without_a_marker_every_renamed_folder_is_complete(tmp_path):
    # Adapters that write under a temporary name and rename (the reference backend) need no marker.
    run_dir = make(tmp_path, "checkpoint-1", "checkpoint-2", ".checkpoint-3.partial", "tmp-checkpoint-3")
    assert run_dir.latest_checkpoint().name == "checkpoint-2"


def test_a_torn_marker_is_no_marker(tmp_path):
    run_dir = make(tmp_path, "checkpoint-1")
    run_dir.checkpoint_marker.write_text("")
    assert run_dir.latest_checkpoint().name == "checkpoint-1"


def write_metrics(run_dir: RunDir, steps: list[int]) -> None:
    for step in steps:
        run_dir.write_metrics({"step": step})
    run_dir.close()


def test_resume_skips_a_checkpoint_whose_step_was_never_logged(tmp_path):
    # verl saves step N's checkpoint, then logs step N: killed in between, step N has no record.
    run_dir = make(tmp_path, "global_step_1", "global_step_2")
    run_dir.mark_checkpoint_complete(2)
    write_metrics(run_dir, [1])
    checkpoint = run_dir.prepare_resume()
    assert checkpoint is not None and checkpoint.name == "global_step_1"  # step 2 is redone, and logged
    assert run_dir.latest_checkpoint().name == "global_step_1"
    assert run_dir.checkpoint_marker.read_text() == "1"
    (moved,) = (run_dir.checkpoints_dir / "superseded").iterdir()
    assert moved.name.startswith("global_step_2-")


def test_resume_from_the_latest_logged_checkpoint(tmp_path):
    run_dir = make(tmp_path, "checkpoint-1", "checkpoint-2")
    run_dir.mark_checkpoint_complete(2)
    write_metrics(run_dir, [1, 2, 3])  # step 3 logged, its checkpoint never written
    assert run_dir.prepare_resume().name == "checkpoint-2"
    assert [r["step"] for r in run_dir.metrics()] == [1, 2]


def test_a_fresh_run_dir_has_nothing_to_resume(tmp_path):
    assert RunDir(tmp_path).prepare_resume() is None
