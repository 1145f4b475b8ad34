"""`{ figure = "fps", min = 50 }`: a figure from an `agent_performance` plugin stays in bounds."""

from __future__ import annotations

from pydantic import Field, model_validator

from pxcontrol.checks.kind import Check, CheckFailed, CheckSettings


class FigureCheck(Check):
    kind = "figure"

    class Settings(CheckSettings):
        figure: str = Field(min_length=1, description="the figure's name, e.g. fps")
        min: float | None = None
        max: float | None = None

        @model_validator(mode="after")
        def _bounded(self) -> FigureCheck.Settings:
            if self.min is None and self.max is None:
                raise ValueError(f"give the figure {self.figure!r} a min, a max or both")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise ValueError(f"min ({self.min}) is above max ({self.max})")
            return self

    def describe(self) -> str:
        bounds = [f">= {self.settings.min:g}"] if self.settings.min is not None else []  # type: ignore[attr-defined]
        if self.settings.max is not None:  # type: ignore[attr-defined]
            bounds.append(f"<= {self.settings.max:g}")  # type: ignore[attr-defined]
        return f"figure {self.target} {' '.join(bounds)}"

    async def probe(self) -> None:
        settings: FigureCheck.Settings = self.settings  # type: ignore[assignment]
        figures = self.context.figures()
        value = figures.get(settings.figure)
        if value is None:
            reported = ", ".join(sorted(figures)) or "none"
            raise CheckFailed(f"no figure {settings.figure!r} (plugins report: {reported})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CheckFailed(f"figure {settings.figure!r} is {value!r}, not a number")
        if settings.min is not None and value < settings.min:
            raise CheckFailed(f"{settings.figure} {value:g} is below {settings.min:g}")
        if settings.max is not None and value > settings.max:
            raise CheckFailed(f"{settings.figure} {value:g} is above {settings.max:g}")
