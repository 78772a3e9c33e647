"""fnhost: AWS Lambda's execution model as a daemon you run yourself."""

__version__ = "0.1.0"
