"""Query strings, ids in paths and credentials of every shape, on every route that reads them.

Whatever the query (any parameter, any value: huge and odd numbers, dates, NUL and other
percent-encoded bytes, repeated parameters), whatever the id in the path, whatever stands in
the authorization headers, the answer is never a 5xx and an error comes in the route's own
envelope.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from tests.conftest import RunningGateway
from tests.fuzz.conftest import ADMIN_KEY, fuzz_settings
from tests.fuzz.envelopes import assert_answer

LIST_ROUTES = {
    "/v1/files": ("purpose", "limit", "order", "after"),
    "/v1/batches": ("limit", "after"),
    "/v1/messages/batches": ("limit", "after_id", "before_id"),
    "/v1/models": (),
    "/admin/logs": (
        "key",
        "model",
        "provider",
        "batch",
        "status",
        "kind",
        "since",
        "until",
        "limit",
        "after",
        "format",
    ),
    "/admin/usage": ("group_by", "interval", "since", "until", "key"),
}
ID_ROUTES = [
    ("GET", "/v1/files/{}"),
    ("DELETE", "/v1/files/{}"),
    ("GET", "/v1/files/{}/content"),
    ("GET", "/v1/batches/{}"),
    ("POST", "/v1/batches/{}/cancel"),
    ("GET", "/v1/batches/{}/results"),
    ("GET", "/v1/messages/batches/{}"),
    ("DELETE", "/v1/messages/batches/{}"),
    ("POST", "/v1/messages/batches/{}/cancel"),
    ("GET", "/v1/messages/batches/{}/results"),
    ("DELETE", "/admin/keys/{}"),
]
ODD_VALUES = [
    "",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "-inf",
    str(2**63),
    str(2**70),
    "-0",
    "1.5",
    " 5",
    "0x10",
    "1_000",
    "\u0665",  # an Arabic-Indic digit: int() takes it
    "2024-02-30",
    "2024-01-01T00:00:00+25:00",
    "9999-12-31T23:59:59",
    "0001-01-01",
    "99999999999999999999",
    "1e308",
    "csv",
    "json",
    "asc",
    "desc",
    "batch",
    "interactive",
    "day",
    "hour",
    "month",
    "model",
    "key",
    "file-x",
    "batch_x",
    "msgbatch_x",
]


def values() -> st.SearchStrategy[str]:
    """A query value, percent-encoded: an odd one, any text, or any bytes."""
    return st.one_of(
        st.sampled_from(ODD_VALUES).map(quote),
        st.text(max_size=30).map(lambda text: quote(text, safe="")),
        st.binary(max_size=12).map(lambda raw: quote(raw, safe="")),
    )


@st.composite
def queries(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    chosen = draw(
        st.lists(
            st.one_of(st.sampled_from(names), st.text(max_size=8))
            if names
            else st.text(max_size=8),
            max_size=4,
        )
    )
    return "&".join(f"{quote(name, safe='')}={draw(values())}" for name in chosen)


def client(gw: RunningGateway, path: str, key: str) -> dict[str, str]:
    token = ADMIN_KEY if path.startswith("/admin") else key
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", sorted(LIST_ROUTES))
@given(data=st.data())
@fuzz_settings(max_examples=15)
def test_list_routes_answer_any_query(
    fuzz_gw: RunningGateway, http: httpx.Client, fuzz_key: str, path: str, data: st.DataObject
) -> None:
    query = data.draw(queries(LIST_ROUTES[path]), "query")
    url = f"{path}?{query}"
    note(url)
    response = http.get(url, headers=client(fuzz_gw, path, fuzz_key))
    assert_answer(response, path)


def ids() -> st.SearchStrategy[str]:
    """An id for a path: a well-formed unknown one, any text, or any bytes, percent-encoded."""
    return st.one_of(
        st.sampled_from(["file-x", "batch_x", "msgbatch_x", "key_x", "x" * 5000, "%00", "%2e"]),
        st.text(min_size=1, max_size=40).map(lambda text: quote(text, safe="")),
        st.binary(min_size=1, max_size=12).map(lambda raw: quote(raw, safe="")),
    ).filter(lambda object_id: object_id not in (".", ".."))  # a client resolves those away


@pytest.mark.parametrize(("method", "template"), ID_ROUTES, ids=[f"{m} {t}" for m, t in ID_ROUTES])
@given(object_id=ids())
@fuzz_settings(max_examples=8)
def test_id_routes_answer_any_id(
    fuzz_gw: RunningGateway,
    http: httpx.Client,
    fuzz_key: str,
    method: str,
    template: str,
    object_id: str,
) -> None:
    path = template.format(object_id)
    note(f"{method} {path}")
    response = http.request(method, path, headers=client(fuzz_gw, path, fuzz_key))
    assert_answer(response, template.format("x"))
    # nothing of that id exists: an error, or (an id of "/" makes a trailing slash) the
    # router's redirect to the path without it
    assert response.status_code >= 400 or response.status_code in (307, 308), response.text


HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)


@pytest.mark.parametrize("path", ["/v1/files", "/v1/models", "/v1/messages/batches", "/admin/keys"])
@given(
    name=st.sampled_from(["authorization", "x-api-key", "api-key"]),
    value=st.one_of(
        HEADER_TEXT,
        HEADER_TEXT.map(lambda text: f"Bearer {text}"),
        st.sampled_from(
            ["Bearer", "bearer  bw-x", "Bearer\tbw-x", "Basic Zm9vOmJhcg==", "bw-" * 300]
        ),
    ).map(lambda value: value.strip(" \t")),  # HTTP trims a header value: clients refuse it
)
@fuzz_settings(max_examples=10)
def test_any_credential_is_answered(
    fuzz_gw: RunningGateway, path: str, name: str, value: str
) -> None:
    note(f"{name}: {value!r}")
    response = httpx.get(
        f"{fuzz_gw.base_url}{path}", headers={name.encode(): value.encode("latin-1")}, timeout=30
    )
    assert_answer(response, path)
    assert response.status_code == 401, response.text
