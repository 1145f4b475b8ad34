"""Actions: the signature is the schema, and every caller is validated the same way."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from pxcontrol import Module, action
from pxcontrol.actions import (
    TooManyArguments,
    arguments_from_list,
    describe_validation_error,
    pascal_case,
)


class Router(Module):
    """A router for tests."""

    class Settings(Module.Settings):
        host: str = "127.0.0.1"

    @action
    async def route(
        self,
        output: Annotated[int, Field(ge=1, description="1-based output")],
        input: int,
        label: str = "",
    ) -> tuple[int, int]:
        """Route an input to an output."""
        return output, input

    @action(name="Go", timeout=0.5)
    async def fire_cue(self, cue: float) -> float:
        return cue

    @action
    async def switch_to_backup(self, routes: list[int] = []) -> list[int]:  # noqa: B006
        return routes


def test_action_names_are_pascal_case_of_the_method_unless_given():
    assert set(Router.actions) == {"Route", "Go", "SwitchToBackup"}
    assert Router.actions["Go"].method == "fire_cue"
    assert Router.actions["Go"].timeout == 0.5
    assert pascal_case("switch_to_backup") == "SwitchToBackup"


def test_schema_comes_from_the_signature_with_descriptions():
    schema = Router.actions["Route"].schema()
    assert schema["required"] == ["output", "input"]
    assert schema["properties"]["output"]["description"] == "1-based output"
    assert schema["properties"]["output"]["minimum"] == 1
    assert schema["properties"]["label"]["default"] == ""
    assert schema["additionalProperties"] is False
    assert Router.actions["Route"].description == "Route an input to an output."


def test_validation_is_the_same_for_every_caller():
    spec = Router.actions["Route"]
    assert spec.validate({"output": "3", "input": 5}) == {"output": 3, "input": 5, "label": ""}
    with pytest.raises(ValidationError) as info:
        spec.validate({"output": 0, "input": "five", "colour": "red"})
    text = describe_validation_error(info.value)
    assert "output: Input should be greater than or equal to 1 (got 0)" in text
    assert "input: Input should be a valid integer" in text
    assert "colour: no such parameter" in text


def test_arguments_from_a_flat_list_fill_in_order_or_by_name():
    spec = Router.actions["Route"]
    assert arguments_from_list(spec, [2, 7]) == {"output": 2, "input": 7}
    assert arguments_from_list(spec, ["input=7", "output=2"]) == {"input": 7, "output": 2}
    assert arguments_from_list(spec, ["label=a=b", 2, 7]) == {
        "label": "a=b",
        "output": 2,
        "input": 7,
    }
    # text for a non-text parameter is read as JSON; text for text stays text
    assert arguments_from_list(Router.actions["SwitchToBackup"], ["routes=[1, 2]"]) == {
        "routes": [1, 2]
    }
    assert arguments_from_list(spec, ["2", "7", "[x]"])["label"] == "[x]"
    with pytest.raises(TooManyArguments, match="takes 3 argument"):
        arguments_from_list(spec, [1, 2, "x", 4])


def test_an_action_must_be_async():
    with pytest.raises(TypeError, match="must be 'async def'"):

        class Bad(Module):
            @action
            def blocking(self) -> None: ...


def test_an_action_parameter_needs_a_type():
    with pytest.raises(TypeError, match=r"give the parameter a type, e\.g\. 'level: int'"):

        class Bad(Module):
            @action
            async def fade(self, level) -> None: ...


def test_two_methods_with_one_action_name_are_refused():
    with pytest.raises(TypeError, match=r"'Route' is declared twice, by route\(\) and other\(\)"):

        class Bad(Module):
            @action
            async def route(self) -> None: ...

            @action(name="Route")
            async def other(self) -> None: ...


def test_an_override_replaces_the_inherited_action():
    class Better(Router):
        @action
        async def route(self, output: int, input: int, level: float = 1.0) -> None: ...

    assert "level" in Better.actions["Route"].params.model_fields
    assert "level" not in Router.actions["Route"].params.model_fields


def test_settings_must_forbid_unknown_keys():
    from pydantic import BaseModel

    with pytest.raises(TypeError, match=r"must derive from Module\.Settings"):

        class Bad(Module):
            class Settings(BaseModel):
                host: str = ""

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Router.Settings.model_validate({"hots": "x"})
