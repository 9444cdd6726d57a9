"""Specs shared by the Python tests."""

import normlab


def spec_for_4_channels(name):
    """A spec of type `name` that fits a (4, 4, 3, 3) input."""
    spec = {"type": name}
    keys = [option["key"] for option in normlab.norm_info(name)["options"]]
    if "groups" in keys:
        spec["groups"] = 2
    if "virtual_batch_size" in keys:
        spec["virtual_batch_size"] = 2
    if "normalized_shape" in keys:
        spec["normalized_shape"] = [4, 3, 3]
    return spec


def buildable_norms(test):
    """The registered names this build can make. Each one it cannot (sync_batch
    without MPI) must say why in norm_info and be refused by Norm."""
    names = []
    for name in normlab.norms():
        if normlab.norm_info(name)["unavailable"]:
            with test.assertRaises(normlab.Error):
                normlab.Norm(spec_for_4_channels(name), 4)
            continue
        names.append(name)
    test.assertGreaterEqual(len(names), 10)
    return names
