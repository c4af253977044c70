from __future__ import annotations

import pytest

from routetrace.routing.patterns import PatternError, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "path", "params"),
    [
        pytest.param("/users/{id}", "/users/42", {"id": "42"}, id="template, one segment"),
        pytest.param("/users/{id}", "/users/42/posts", None, id="template does not span /"),
        pytest.param("/users/{id}", "/users/", None, id="template needs a value"),
        pytest.param("/users/{id:int}", "/users/7", {"id": "7"}, id="int convertor"),
        pytest.param("/users/{id:int}", "/users/abc", None, id="int convertor rejects text"),
        pytest.param("/p/{x:float}", "/p/1.5", {"x": "1.5"}, id="float convertor"),
        pytest.param("/o/{u:uuid}", "/o/123e4567-e89b-12d3-a456-426614174000",
                     {"u": "123e4567-e89b-12d3-a456-426614174000"}, id="uuid convertor"),
        pytest.param("/files/{path:path}", "/files/a/b/c.txt", {"path": "a/b/c.txt"},
                     id="path convertor spans /"),
        pytest.param("/a/{x}-{y}", "/a/1-2", {"x": "1", "y": "2"}, id="two params, one segment"),
        pytest.param("/chat/**", "/chat", {}, id="** matches zero segments"),
        pytest.param("/chat/**", "/chat/", {}, id="** matches a trailing slash"),
        pytest.param("/chat/**", "/chat/1/2/3", {}, id="** matches any depth"),
        pytest.param("/chat/**", "/chatroom", None, id="** keeps the segment boundary"),
        pytest.param("/a/**/b", "/a/b", {}, id="inner ** zero segments"),
        pytest.param("/a/**/b", "/a/x/y/b", {}, id="inner ** several segments"),
        pytest.param("/static/*", "/static/app.js", {}, id="* one segment"),
        pytest.param("/static/*", "/static/js/app.js", None, id="* not two segments"),
        pytest.param("/static/*.css", "/static/site.css", {}, id="* inside a segment"),
        pytest.param("/static/*.css", "/static/site.js", None, id="* with a suffix"),
        pytest.param("/healthz", "/healthz", {}, id="literal"),
        pytest.param("/healthz", "/healthz/", None, id="literal is exact"),
        pytest.param("/a.b", "/aXb", None, id="regex characters are literal"),
        pytest.param("/**", "/anything/at/all", {}, id="/** matches everything"),
        pytest.param("/v/{x}", "/v/a\nb", {"x": "a\nb"}, id="newline in a path"),
    ],
)
def test_pattern_matching(pattern: str, path: str, params: dict | None) -> None:
    assert compile_pattern(pattern).match(path) == params


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        pytest.param("users/{id}", "must start with '/'", id="no leading slash"),
        pytest.param("/users/{id", "unbalanced", id="unbalanced brace"),
        pytest.param("/users/id}", "unbalanced", id="stray closing brace"),
        pytest.param("/users/{}", "needs a name", id="empty parameter"),
        pytest.param("/users/{1x}", "needs a name", id="bad parameter name"),
        pytest.param("/a/{x}/{x}", "appears twice", id="duplicate parameter"),
        pytest.param("/a/{x:date}", "unknown convertor 'date'", id="unknown convertor"),
        pytest.param("/a/x**", "whole path segment", id="** inside a segment"),
        pytest.param("/a b", "no spaces", id="space"),
        pytest.param("/a?b=1", "'?'", id="query string"),
        pytest.param(42, "must be a string", id="not a string"),
    ],
)
def test_bad_patterns(pattern: object, message: str) -> None:
    with pytest.raises(PatternError, match=None) as info:
        compile_pattern(pattern)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_template_flag() -> None:
    assert compile_pattern("/users/{id}").is_template
    assert not compile_pattern("/chat/**").is_template
