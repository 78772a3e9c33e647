"""fnhost: AWS Lambda's execution model as a daemon you run yourself."""

import os as _os

# The daemon forks workers while grpc's threads run. grpc's fork handlers are for processes that
# keep using grpc after fork; ours exec at once, and with the handlers on, a child that has not
# exec'd yet can crash inside cygrpc (seen as workers dying of SIGSEGV before their first word).
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
