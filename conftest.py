"""Collection rules for the whole repository (tests/ and the builders' tests in data_builders/)."""


def pytest_collection_modifyitems(config, items):
    """Drops `tf.test.TestCase.test_session`: a context manager whose name pytest mistakes for a
    test, which it then reports as skipped."""
    placeholders = [item for item in items if item.name == "test_session"]
    if placeholders:
        config.hook.pytest_deselected(items=placeholders)
        items[:] = [item for item in items if item.name != "test_session"]
