import pytest
from hypothesis import HealthCheck, settings

# "ci" keeps the suite short and reproducible; the fuzzing campaign (docs/robustness.md) runs
# with --hypothesis-profile=campaign.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("campaign", max_examples=20_000, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("shake", max_examples=1_500, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the golden files of generated code instead of comparing")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")
