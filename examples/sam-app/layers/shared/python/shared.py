"""A module shared by the functions through a layer (on sys.path as /opt/python in Lambda)."""

VERSION = "1"
