"""Budget grids: `BudgetGrid` (YAML, strict) crosses the sequential axis (max new tokens L per
trace), the parallel axis (k traces) and the aggregative axis (none -> pass@k, majority -> maj@k,
aggregate with a set size, rsa with N, K and a list of T), over `problems` problems and replicate
`seeds`; `grid_cells` lists its cells, `trace_counts` what a pooled sweep saves over sampling each
cell on its own. Presets live in `spiral_bench/presets/*.yaml`; `load_grid(name_or_path)` reads
either. The sweep itself is `spiral_bench.sweep`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .backends.base import derive_seed
from .config import ConfigError, load_yaml, option

PRESET_DIR = Path(__file__).with_name("presets")
KINDS = ("none", "majority", "aggregate", "rsa")


@dataclasses.dataclass(frozen=True)
class AggregativeSpec:
    """One point of the aggregative axis."""

    kind: str = option("none", help="none (pass@k), majority (maj@k), aggregate (one aggregation "
                                    "trace over set_size of n candidates) or rsa.", choices=KINDS)
    set_size: int = option(4, help="aggregate: candidates shown to the aggregation trace.", min=1)
    n: tuple[int, ...] = option((), help="aggregate: candidate counts n, one cell each (empty = [set_size]).", min=1)
    population: int = option(8, help="rsa: population size N.", min=1)
    subset: int = option(4, help="rsa: subset size K each member aggregates.", min=1)
    steps: tuple[int, ...] = option((1,), help="rsa: the step counts T, one cell each (one run to the largest).", min=1)

    def validate(self) -> None:
        if self.kind == "aggregate" and any(n < self.set_size for n in self.ns):
            raise ConfigError(f"n: {list(self.n)} has a value below set_size={self.set_size}")
        if self.kind == "rsa":
            if self.subset > self.population:
                raise ConfigError(f"subset: {self.subset} exceeds population={self.population}")
            if not self.steps or len(set(self.steps)) != len(self.steps):
                raise ConfigError(f"steps: {list(self.steps)} must be a non-empty list without repeats")

    @property
    def ns(self) -> tuple[int, ...]:
        return self.n or (self.set_size,)


@dataclasses.dataclass(frozen=True)
class BudgetGrid:
    """Which inference budgets to evaluate (see module doc)."""

    name: str = option("custom", help="Grid name (presets: smoke, default, paper).")
    sequential: tuple[int, ...] = option((32,), help="Max new tokens per trace (every trace of a cell).", min=1)
    parallel: tuple[int, ...] = option((1,), help="k values for pass@k / maj@k, all from one pool.", min=1)
    aggregative: tuple[AggregativeSpec, ...] = option(
        default_factory=lambda: (AggregativeSpec("none"),), help="Aggregative axis: a list of specs.")
    problems: int = option(100, help="How many problems the caller draws (`select_problems`).", min=1)
    seeds: tuple[int, ...] = option((0,), help="Replicate seeds; each has its own pools and cells.")
    aggregation_template: str | None = option(None, help="Aggregation prompt template; None = the task's.")
    maj_method: str = option("auto", help="maj@k estimator: exact, mc (Monte Carlo subsets) or auto.",
                             choices=("auto", "exact", "mc"))
    mc_subsets: int = option(20_000, help="Monte Carlo subsets per problem when maj@k uses mc.", min=1)

    def validate(self) -> None:
        for field in ("sequential", "parallel", "seeds"):
            v = getattr(self, field)
            if not v or len(set(v)) != len(v):
                raise ConfigError(f"{field}: {list(v)} must be a non-empty list without repeats")
        if not self.aggregative:
            raise ConfigError("aggregative: the list is empty; use [{kind: none}] for pass@k only")

    @property
    def pool_size(self) -> int:
        """N_max: traces per problem in each pool."""
        need = [0]
        for a in self.aggregative:
            need += list(self.parallel) if a.kind in ("none", "majority") else \
                list(a.ns) if a.kind == "aggregate" else [a.population]
        return max(need)


def load_grid(name_or_path: str | Path, overrides: dict | None = None) -> BudgetGrid:
    """A preset name (smoke, default, paper) or a YAML path -> a validated BudgetGrid."""
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") or p.exists()):
        p = PRESET_DIR / f"{name_or_path}.yaml"
        if not p.exists():
            names = sorted(x.stem for x in PRESET_DIR.glob("*.yaml"))
            raise ConfigError(f"budget grid {str(name_or_path)!r} is neither a preset ({', '.join(names)}) nor a YAML file")
    try:
        return load_yaml(BudgetGrid, p, overrides)
    except ConfigError as e:
        raise ConfigError(f"budget grid {p}: {e}") from None


def select_problems(task, grid: BudgetGrid, split: str = "test", seed: int = 0):
    """The grid's number of problems from a task (deterministic)."""
    return task.problems(split, n=grid.problems, seed=seed)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a grid: a family at one (L, k, set size, steps, pool size, replicate)."""

    family: str          # pass@k, maj@k, aggregate, rsa, rsa_maj
    max_tokens: int
    k: int
    set_size: int
    steps: int
    pool_size: int
    replicate: int

    @property
    def id(self) -> str:
        fam = self.family.replace("@", "_at_")
        return (f"{fam}__L{self.max_tokens}_k{self.k}_s{self.set_size}_T{self.steps}_N{self.pool_size}"
                f"_r{self.replicate}")


def grid_cells(grid: BudgetGrid) -> list[Cell]:
    """Every cell of the grid, in run order (replicate, L, then pooled / aggregate / rsa)."""
    out, N = [], grid.pool_size
    for r in grid.seeds:
        for L in grid.sequential:
            for a in grid.aggregative:
                if a.kind in ("none", "majority"):
                    fam = "pass@k" if a.kind == "none" else "maj@k"
                    out += [Cell(fam, L, k, 0, 0, N, r) for k in grid.parallel]
                elif a.kind == "aggregate":
                    out += [Cell("aggregate", L, n, a.set_size, 1, 0, r) for n in a.ns]
                else:
                    for T in sorted(a.steps):
                        out += [Cell(f, L, a.population, a.subset, T, 0, r) for f in ("rsa", "rsa_maj")]
    return list(dict.fromkeys(out))


def trace_counts(grid: BudgetGrid, prefix_pool: bool = False) -> dict:
    """Traces and max-token budget per problem: pooled sweep vs sampling every cell on its own.

    naive: pass@k / maj@k cell k traces; aggregate (n) n + 1; rsa (N, T) N + T*N (rsa and rsa_maj
    are one cell: the same run gives both). pooled: per (replicate, L) N_max pool traces + one
    aggregation trace per aggregate cell + N * max(T) per rsa spec. Budgets weight traces by L.
    prefix_pool: the pool is drawn once per replicate at L_max (budget N_max * L_max), not per L.
    """
    naive = pooled = naive_b = pooled_b = 0
    for c in grid_cells(grid):
        if c.family == "rsa_maj":
            continue
        t = c.k if c.family in ("pass@k", "maj@k") else c.k + 1 if c.family == "aggregate" else c.k * (1 + c.steps)
        naive, naive_b = naive + t, naive_b + t * c.max_tokens
    for _ in grid.seeds:
        if prefix_pool:
            pooled, pooled_b = pooled + grid.pool_size, pooled_b + grid.pool_size * max(grid.sequential)
        for L in grid.sequential:
            t = 0 if prefix_pool else grid.pool_size
            for a in grid.aggregative:
                t += len(a.ns) if a.kind == "aggregate" else a.population * max(a.steps) if a.kind == "rsa" else 0
            pooled, pooled_b = pooled + t, pooled_b + t * L
    return {"naive_traces": naive, "pooled_traces": pooled, "naive_budget": naive_b, "pooled_budget": pooled_b}


def replicate_seed(seed: int, replicate: int) -> int:
    """Run seed of replicate r (what scaffolds get as `seed`)."""
    return derive_seed("sweep", seed, replicate)
