"""GET /v1/experiments a page at a time, over real HTTP against a served process: every experiment once, in name
order, with those created during the walk found when their names come after the cursor."""

from __future__ import annotations

import httpx
import pytest

NAMES = [
    f"exp-{index:02d}" for index in (17, 3, 22, 9, 0, 14, 5, 11, 20, 1, 8, 19, 6, 13, 2, 21, 10, 4, 16, 7, 12, 18, 15)
]


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    from banditkit.service import Settings
    from banditkit.service.runner import ServiceProcess

    folder = tmp_path_factory.mktemp("listing")
    settings = Settings(
        store=f"sqlite:///{folder / 'listing.db'}", port=0, tune_interpreter=False, spool_dir=folder / "spool"
    )
    with ServiceProcess(settings) as process, httpx.Client(base_url=process.base_url, timeout=30.0) as client:
        for name in NAMES:
            client.post("/v1/experiments", json={"name": name, "arms": ["a", "b"]}).raise_for_status()
        yield client


def walk(http: httpx.Client, limit: int, between=None) -> list[list[str]]:
    """The names of each page, following next_cursor from the first page to the last."""
    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
        response = http.get("/v1/experiments", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"experiments", "next_cursor"}
        pages.append([experiment["name"] for experiment in page["experiments"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == pages[-1][-1]
        if between is not None:
            between(len(pages))


def test_pages_hold_every_experiment_once_in_name_order(http):
    pages = walk(http, limit=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [name for page in pages for name in page] == sorted(NAMES)


def test_a_page_as_long_as_what_is_left_is_the_last(http):
    assert walk(http, limit=len(NAMES)) == [sorted(NAMES)]
    assert walk(http, limit=1000) == [sorted(NAMES)]


def test_the_first_page_without_parameters_holds_up_to_100(http):
    page = http.get("/v1/experiments").json()
    assert [experiment["name"] for experiment in page["experiments"]] == sorted(NAMES)
    assert page["next_cursor"] is None
    assert page["experiments"][0] == http.get(f"/v1/experiments/{sorted(NAMES)[0]}").json()


def test_a_cursor_past_the_end_gives_an_empty_last_page(http):
    assert http.get("/v1/experiments", params={"cursor": "zzz"}).json() == {"experiments": [], "next_cursor": None}


def test_experiments_created_during_a_walk(tmp_path):
    """One created after the cursor is found, one before it is not (it was not there when its page was read);
    nothing is seen twice."""
    from banditkit.service import Settings
    from banditkit.service.runner import ServiceProcess

    settings = Settings(
        store=f"sqlite:///{tmp_path / 'walk.db'}", port=0, tune_interpreter=False, spool_dir=tmp_path / "spool"
    )
    with ServiceProcess(settings) as process, httpx.Client(base_url=process.base_url, timeout=30.0) as client:
        for name in ("b1", "b2", "b3", "b4"):
            client.post("/v1/experiments", json={"name": name, "arms": ["a"]}).raise_for_status()

        def create(pages_read: int) -> None:
            if pages_read == 1:  # after the page [b1, b2]
                for name in ("a0", "b25", "c9"):
                    client.post("/v1/experiments", json={"name": name, "arms": ["a"]}).raise_for_status()

        pages = walk(client, limit=2, between=create)
    assert pages == [["b1", "b2"], ["b25", "b3"], ["b4", "c9"]]


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=", "cursor"),
        ("after=x", "after"),
    ],
)
def test_bad_page_parameters_name_the_parameter(http, query, field):
    response = http.get(f"/v1/experiments?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]
