from localdev.routes import RouteTemplate


def test_route_parameters_are_extracted_under_the_prefix() -> None:
    route = RouteTemplate.parse("api", "tickets/{id}")
    assert route.match("/api/tickets/abc-123") == {"id": "abc-123"}
    assert route.match("/api/tickets/abc-123/") == {"id": "abc-123"}
    assert route.match("/tickets/abc-123") is None
    assert route.match("/api/tickets") is None
    assert route.match("/api/tickets/a/b") is None


def test_constraints_optional_and_catch_all_parameters() -> None:
    assert RouteTemplate.parse("api", "items/{id:guid}").match("/api/items/x") == {"id": "x"}
    assert RouteTemplate.parse("api", "items/{id?}").match("/api/items") == {}
    assert RouteTemplate.parse("api", "files/{*path}").match("/api/files/a/b") == {"path": "a/b"}


def test_empty_prefix_and_literal_characters_are_escaped() -> None:
    route = RouteTemplate.parse("", "a.b/{x}")
    assert route.match("/a.b/1") == {"x": "1"}
    assert route.match("/aXb/1") is None


def test_literal_segments_outrank_parameters() -> None:
    summary = RouteTemplate.parse("api", "tickets/summary")
    by_id = RouteTemplate.parse("api", "tickets/{id}")
    assert sorted([by_id, summary], key=lambda r: r.precedence) == [summary, by_id]
