"""The handler a Python spare imports and invokes while it waits (rehearsal.py): never a function's."""


def handler(event, context):
    return {"event": event, "function": context.function_name, "left_ms": context.get_remaining_time_in_millis()}
