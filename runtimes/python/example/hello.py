def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!", "runtime": "python", "request_id": context.aws_request_id}
