"""Unit tests of the Azure dialect's pieces: the ``azure.deployments`` config, deployment
names as aliases in the router, and the Azure wire's checks."""

from __future__ import annotations

from typing import Any

import pytest

from batchway.config import Config
from batchway.core.endpoints import Endpoint
from batchway.core.routing import Router
from batchway.dialects.azure.wire import (
    DEPLOYMENT_ENDPOINTS,
    check_api_version,
    deployment_not_found,
)
from batchway.errors import InvalidRequest

SIM = {"provider": "sim", "model": "upstream"}


def config(deployments: dict[str, Any]) -> Config:
    return Config.model_validate(
        {
            "providers": {"sim": {"kind": "simulated"}},
            "models": {"chat": SIM, "embed": SIM},
            "azure": {"deployments": deployments},
        }
    )


def test_no_azure_section_maps_nothing() -> None:
    plain = Config.model_validate({"providers": {"sim": {"kind": "simulated"}}})
    assert plain.azure.deployments == {}


def test_deployments_map_names_to_public_models() -> None:
    loaded = config({"my-chat.v2_eu": "chat", "chat": "chat"})
    assert loaded.azure.deployments == {"my-chat.v2_eu": "chat", "chat": "chat"}


@pytest.mark.parametrize(
    ("deployments", "problem"),
    [
        ({"d": "nope"}, "azure deployment 'd' names unknown model 'nope'"),
        ({"chat": "embed"}, "azure deployment 'chat' is the name of another public model"),
        ({"a/b": "chat"}, "deployment name 'a/b' must be 1 to 64 letters"),
        ({"": "chat"}, "deployment name '' must be"),
        ({"x" * 65: "chat"}, "must be 1 to 64 letters"),
    ],
)
def test_bad_deployments_are_refused(deployments: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        config(deployments)


def test_the_router_resolves_aliases_without_shadowing_public_names() -> None:
    loaded = config({"my-chat": "chat"})
    router = Router(loaded, aliases={**loaded.azure.deployments, "embed": "chat", "x": "nope"})
    assert router.public_model("chat") == "chat"
    assert router.public_model("my-chat") == "chat"
    assert router.public_model("embed") == "embed"  # a public name is never an alias
    assert router.public_model("x") is None  # an alias of no configured model
    assert router.public_model("nope") is None
    assert router.batch_model("my-chat") == "chat"
    assert router.batch_model("chat-batch") == "chat"
    assert router.batch_model("my-chat-batch") is None  # the suffix is for public names
    assert Router(loaded).public_model("my-chat") is None  # no aliases given


def test_api_version_is_required_and_any_value_is_taken() -> None:
    assert check_api_version("2024-10-21") == "2024-10-21"
    assert check_api_version("v1") == "v1"
    for missing in (None, ""):
        with pytest.raises(InvalidRequest) as error:
            check_api_version(missing)
        assert (error.value.code, error.value.param) == ("BadRequest", "api-version")


def test_deployment_errors_and_paths() -> None:
    error = deployment_not_found()
    assert (error.status_code, error.code) == (404, "DeploymentNotFound")
    assert DEPLOYMENT_ENDPOINTS["/chat/completions"] is Endpoint.CHAT
    # /chat/completions is tried before /completions, whose route would match it too
    assert list(DEPLOYMENT_ENDPOINTS).index("/chat/completions") < list(DEPLOYMENT_ENDPOINTS).index(
        "/completions"
    )
