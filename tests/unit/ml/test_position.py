"""Where a resumed sparse_lr job starts (jobs/position.py)."""
import pytest

from mpips.errors import UsageError
from mpips.jobs.position import Position

JOB = {"epoch": 3, "step": 0, "curve": [0.6, 0.5, 0.4], "partial_loss": [0.0, 0.0],
       "workers": 2}


def test_no_checkpoint_starts_at_the_beginning():
    assert Position.from_job(None, 4) == Position()


def test_the_same_workers_resume_where_the_checkpoint_stopped():
    job = dict(JOB, step=7, partial_loss=[1.5, 2.5])
    position = Position.from_job(job, 2)
    assert (position.epoch, position.step, position.curve) == (3, 7, [0.6, 0.5, 0.4])
    assert position.loss_so_far(1) == 2.5
    # its epoch runs from step 7 with worker 1's loss so far; later epochs from the start
    assert position.entering(3, 1) == (7, 2.5)
    assert position.entering(4, 1) == (0, 0.0)


@pytest.mark.parametrize("workers", [1, 3])
def test_an_epoch_end_checkpoint_resumes_on_any_number_of_workers(workers):
    """After a lost worker, the relaunch shards the next epoch over the workers left."""
    position = Position.from_job(JOB, workers)
    assert (position.epoch, position.step, position.curve) == (3, 0, [0.6, 0.5, 0.4])
    assert position.loss_so_far(workers - 1) == 0.0


def test_a_mid_epoch_checkpoint_needs_the_workers_that_wrote_it():
    with pytest.raises(UsageError, match="mid-epoch \\(step 7\\) by 2 workers.*not 3"):
        Position.from_job(dict(JOB, step=7), 3)


def test_step_ids_continue_from_the_resumed_checkpoint():
    """Ids count the steps the job has run, whatever the steps per epoch."""
    assert Position().step_id(2, 5, 10) == 25
    same = Position.from_job(dict(JOB, step=7, partial_loss=[1.0, 2.0], checkpoint_step=37), 2)
    assert same.step_id(3, 7, 10) == 37 and same.step_id(4, 0, 10) == 40
    with pytest.raises(ValueError, match="before the start"):
        same.step_id(3, 6, 10)


@pytest.mark.parametrize("workers,steps_per_epoch", [(4, 6), (1, 24)])
def test_step_ids_grow_after_a_resume_on_another_worker_count(workers, steps_per_epoch):
    """2 workers wrote epoch 3's end as step 36 (12 steps per epoch). On 4 workers an epoch has
    6 steps, and epoch * steps_per_epoch would name epoch 4's end step 24: older-looking than
    36, so a restore would pick epoch 3 again and keep=K could prune the newer checkpoint."""
    position = Position.from_job(dict(JOB, checkpoint_step=36), workers)
    ids = [position.step_id(epoch, 0, steps_per_epoch) for epoch in (4, 5)]
    assert ids == [36 + steps_per_epoch, 36 + 2 * steps_per_epoch]
    assert position.step_id(3, 1, steps_per_epoch) == 37 > 36


def test_ids_go_on_when_the_steps_per_epoch_change_mid_run():
    """A worker died (live path): from epoch 5 on, 3 workers run 16 steps per epoch, not 12."""
    start = Position.from_job(dict(JOB, checkpoint_step=36), 4)
    later = start.rebased(5, 12)
    assert later.steps_done == start.step_id(5, 0, 12) == 60
    assert later.step_id(5, 3, 16) == 63 and later.step_id(6, 0, 16) == 76


def test_a_mid_epoch_checkpoint_resumes_only_under_its_own_assignment():
    dynamic = dict(JOB, step=5, assign="dynamic", done_blocks=[0, 3, 4, 7, 9],
                   partial_loss=[2.5, 640.0])
    position = Position.from_job(dynamic, 3, "dynamic")  # blocks: any number of workers
    assert position.done_blocks == [0, 3, 4, 7, 9] and position.step == 5
    with pytest.raises(UsageError, match="with --assign dynamic, so --resume needs --assign "
                                         "dynamic, not static"):
        Position.from_job(dynamic, 3, "static")
    with pytest.raises(UsageError, match="with --assign static"):
        Position.from_job(dict(JOB, step=7), 2, "dynamic")
    assert Position.from_job(JOB, 5, "dynamic").epoch == 3  # an epoch end: either
