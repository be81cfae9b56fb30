import pytest


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the golden files of generated code instead of comparing")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")
