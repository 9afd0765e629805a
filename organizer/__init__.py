"""organizer: turn a folder of unlabeled images into named groups, then into a classifier.

    from organizer import Library
    lib = Library("~/photos-store")
    lib.index("~/Photos"); lib.cluster(); lib.name_cluster(0, "beach"); lib.train(); lib.predict()
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy, so `import organizer` stays instant
    if name == "Library":
        from organizer.library import Library

        return Library
    raise AttributeError(name)
