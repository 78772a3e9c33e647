"""The pure parts of Lambda's API: names and ARNs, pagination markers, the error table."""

from __future__ import annotations

import pytest
from fnhost import errors
from fnhost.api import lambda_wire
from fnhost.api.lambda_http import LambdaApi
from fnhost.api.lambda_shapes import function_name, page


@pytest.mark.parametrize("raw, qualifier, expected", [
    ("fn", "", ("fn", "")),
    ("fn:live", "", ("fn", "live")),
    ("fn", "3", ("fn", "3")),
    ("fn:3", "3", ("fn", "3")),
    ("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3A%24LATEST", "", ("fn", "$LATEST")),
    ("arn:aws:lambda:eu-west-1:123456789012:function:fn", "", ("fn", "")),
    ("123456789012:function:fn:beta", "", ("fn", "beta")),
])
def test_function_names_and_arns(raw: str, qualifier: str, expected: tuple[str, str]) -> None:
    assert function_name(raw, qualifier) == expected


@pytest.mark.parametrize("raw, qualifier", [("fn:1", "2"), ("a/b", ""), ("fn:1:2", ""), ("", "")])
def test_bad_function_names(raw: str, qualifier: str) -> None:
    with pytest.raises(errors.InvalidParameter):
        function_name(raw, qualifier)


def test_pages_resume_after_the_marker_even_when_items_go() -> None:
    items = [f"f{i}" for i in range(7)]
    first, marker = page(items, "", 3, str)
    assert first == ["f0", "f1", "f2"] and marker
    items.remove("f2")  # deleted between pages: the next page still starts after it
    second, marker = page(items, marker, 3, str)
    assert second == ["f3", "f4", "f5"]
    last, marker = page(items, marker, 3, str)
    assert last == ["f6"] and marker is None
    assert page(items, "", None, str) == (items, None)


@pytest.mark.parametrize("error, status", [
    (errors.ResourceNotFound("x"), 404), (errors.ResourceConflict("x"), 409), (errors.InvalidParameter("x"), 400),
    (errors.InvalidRequestContent("x"), 400), (errors.PreconditionFailed("x"), 412),
    (errors.RequestTooLarge("x"), 413), (errors.TooManyRequests("x"), 429), (errors.NotImplementedYet("x"), 400),
    (errors.InvalidSignature("x"), 403), (errors.UnrecognizedClient("x"), 403), (errors.AccessDenied("x"), 403),
    (errors.MissingAuthenticationToken("x"), 403), (errors.UnknownOperation("x"), 404),
    (errors.MethodNotAllowed("x"), 405), (errors.ShuttingDown("x"), 503), (errors.ApiError("x"), 500),
])
def test_each_refusal_has_lambdas_status(error: errors.ApiError, status: int) -> None:
    response = lambda_wire.error_response(error, "rid")
    assert response.status == status
    assert (b"x-amzn-errortype", error.code.encode()) in response.headers


def test_routes_and_their_body_limits() -> None:
    api = LambdaApi.__new__(LambdaApi)  # match() needs no supervisor
    assert api.match("POST", "/2015-03-31/functions/fn/invocations").body_max == 6 * 1024 * 1024
    assert api.match("GET", "/2015-03-31/functions/").operation == "ListFunctions"
    assert api.match("PUT", "/2015-03-31/functions/fn/code").body_max > 69_905_067
    assert api.match("GET", "/2019-09-30/functions/fn/concurrency").operation == "GetFunctionConcurrency"
    assert api.match("DELETE", "/2015-03-31/functions/fn/aliases/live").params == {"fn": "fn", "name": "live"}
