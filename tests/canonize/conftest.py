import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # these tests run many tiny float64 ops: one thread avoids OpenMP spinning on a busy 2-core box
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
