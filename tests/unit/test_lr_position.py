"""Where a resumed sparse_lr job starts (jobs/lr_position.py)."""
import pytest

from mpips.jobs.lr_position import Position

JOB = {"epoch": 3, "step": 0, "curve": [0.6, 0.5, 0.4], "partial_loss": [0.0, 0.0],
       "workers": 2}


def test_no_checkpoint_starts_at_the_beginning():
    assert Position.from_job(None, 4) == Position()


def test_the_same_workers_resume_where_the_checkpoint_stopped():
    job = dict(JOB, step=7, partial_loss=[1.5, 2.5])
    position = Position.from_job(job, 2)
    assert (position.epoch, position.step, position.curve) == (3, 7, [0.6, 0.5, 0.4])
    assert position.loss_so_far(1) == 2.5


@pytest.mark.parametrize("workers", [1, 3])
def test_an_epoch_end_checkpoint_resumes_on_any_number_of_workers(workers):
    """After a lost worker, the relaunch shards the next epoch over the workers left."""
    position = Position.from_job(JOB, workers)
    assert (position.epoch, position.step, position.curve) == (3, 0, [0.6, 0.5, 0.4])
    assert position.loss_so_far(workers - 1) == 0.0


def test_a_mid_epoch_checkpoint_needs_the_workers_that_wrote_it():
    with pytest.raises(SystemExit, match="mid-epoch \\(step 7\\) by 2 workers.*not 3"):
        Position.from_job(dict(JOB, step=7), 3)
