"""`ktg query --where`: a small filter language over the results table, and nothing more.

pandas' `DataFrame.query(engine="python")` evaluates Python: `@name` reaches the
caller's variables, and attribute access reaches the rest of the process
(`@load_results.__globals__['os'].system(...)` ran a shell command). A filter from a
shared script or a colleague's message is input, so it is parsed here instead (Python's
`ast` for the syntax, then a walk that accepts only what is listed below) and evaluated
with pandas operations on the named columns:

    column names                    objective, status, gate_D_0, ...
    literals                        'text', "text", 5, 2.5, -1, True/true, False/false, None
    comparisons (chains too)        ==  !=  <  <=  >  >=     e.g. 2 < objective <= 5
    membership in a literal list    status in ['completed', 'stopped'],  not in [...]
    arithmetic on numbers           +  -  *  /               e.g. is_best_g0 - is_best_g1 > 1
    logic                           and  or  not  (and pandas' & | ~)
    missing values                  isna(column), notna(column), column == None

Anything else (attributes, calls, subscripts, `@`, lambdas, comprehensions) is one
`KtgError` naming the part that is not allowed and the valid columns.
"""
from __future__ import annotations

import ast
import operator
from typing import Any

from ..errors import KtgError

MAX_LENGTH = 2000   # characters
MAX_NODES = 400     # syntax tree nodes: a filter is a line, not a program

ALLOWED = ("column names, 'text', numbers, True/False, None, == != < <= > >=, "
           "in [...], not in [...], + - * /, and, or, not, isna(column), notna(column)")
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
        ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv}
_NAMES = {"true": True, "false": False, "True": True, "False": False, "None": None,
          "null": None}


class _Refused(Exception):
    """A part of the filter that is not allowed (the message names it)."""


def filter_rows(df, expr: str, flag: str = "--where"):
    """The rows of `df` where the filter `expr` holds; KtgError for a filter that is not
    allowed, refers to an unknown column, or compares things that cannot be compared."""
    import pandas as pd
    columns = ", ".join(map(str, df.columns))

    def fail(why: str) -> KtgError:
        return KtgError(f"{flag} {expr[:200]!r}: {why}; allowed: {ALLOWED}; valid columns: "
                        f"{columns}")
    if not isinstance(expr, str) or not expr.strip():
        raise fail("empty filter")
    if len(expr) > MAX_LENGTH:
        raise fail(f"longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        if "@" in expr:  # pandas' query reads `@name` as a variable of the program
            raise fail("`@` (a variable of the program, in pandas' query) is not "
                       "allowed") from None
        raise fail(f"not a filter expression ({e.msg} at column {e.offset})") from None
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes
        raise fail("not a filter expression (nested too deeply or unreadable)") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise fail(f"more than {MAX_NODES} parts")
    try:
        mask = _Eval(df, expr).eval(tree.body)
    except _Refused as e:
        raise fail(str(e)) from None
    except RecursionError:
        raise fail("nested too deeply") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise fail(f"cannot be evaluated on this table ({type(e).__name__}: "
                   f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if isinstance(mask, (bool,)) or (hasattr(mask, "dtype") and mask.dtype == bool
                                     and getattr(mask, "ndim", 0) == 0):
        mask = pd.Series(bool(mask), index=df.index)
    if not isinstance(mask, pd.Series) or not pd.api.types.is_bool_dtype(mask):
        raise fail("is not a condition (true or false for each row): compare a column with "
                   "something")
    return df[mask.fillna(False).astype(bool)]


class _Eval:
    def __init__(self, df, expr: str) -> None:
        self.df, self.expr = df, expr

    def part(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.expr.strip(), node) or ast.unparse(node)
        return text if len(text) <= 80 else text[:77] + "..."

    def refuse(self, node: ast.AST, what: str) -> _Refused:
        return _Refused(f"`{self.part(node)}` is not allowed ({what})")

    # ---- values -------------------------------------------------------------------------
    def value(self, node: ast.AST) -> Any:
        """A column (Series), a literal, or arithmetic on them."""
        if isinstance(node, ast.Name):
            if node.id in self.df.columns:
                return self.df[node.id]
            if node.id in _NAMES:
                return _NAMES[node.id]
            raise _Refused(f"unknown column {node.id!r}")
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, (bool, int, float, str)):
                return node.value
            raise self.refuse(node, f"a {type(node.value).__name__} literal")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.value(node.operand)
            if isinstance(v, str) or v is None or isinstance(v, bool):
                raise self.refuse(node, "a sign before something that is not a number")
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            left, right = self.value(node.left), self.value(node.right)
            for side in (left, right):
                if isinstance(side, str) or side is None or isinstance(side, bool):
                    raise self.refuse(node, "arithmetic is on numbers only")
                # a text column times a number repeats every string (`graph * 10**9`
                # builds gigabytes): a column in arithmetic must hold numbers
                if hasattr(side, "dtype") and not _numeric(side):
                    raise self.refuse(node, "arithmetic is on numbers only (this column "
                                            "holds text)")
            return _ARITH[type(node.op)](left, right)
        if isinstance(node, (ast.Compare, ast.BoolOp, ast.Call)) or (
                isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert))):
            return self.eval(node)
        raise self.refuse(node, _describe(node))

    # ---- conditions ---------------------------------------------------------------------
    def eval(self, node: ast.AST) -> Any:
        """A boolean Series (or a bool) for a condition."""
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            a, b = self.condition(node.left), self.condition(node.right)
            return (a & b) if isinstance(node.op, ast.BitAnd) else (a | b)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            v = self.condition(node.operand)
            return (not v) if isinstance(v, bool) else ~v
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        return self.value(node)

    def condition(self, node: ast.AST) -> Any:
        import pandas as pd
        v = self.eval(node)
        if isinstance(v, bool) or (isinstance(v, pd.Series) and pd.api.types.is_bool_dtype(v)):
            return v
        raise _Refused(f"`{self.part(node)}` is not a condition (true or false for each "
                       f"row)")

    def compare(self, node: ast.Compare) -> Any:
        out = None
        left = self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right_node, (ast.List, ast.Tuple, ast.Set)):
                    raise self.refuse(right_node, "`in` takes a literal list, e.g. "
                                                  "['a', 'b']")
                values = [self.literal(e) for e in right_node.elts]
                hit = left.isin(values) if hasattr(left, "isin") else left in values
                res = (~hit if hasattr(hit, "__invert__") and not isinstance(hit, bool)
                       else not hit) if isinstance(op, ast.NotIn) else hit
                right = values
            elif type(op) in _CMP:
                right = self.value(right_node)
                if right is None or left is None:
                    if not isinstance(op, (ast.Eq, ast.NotEq)):
                        raise self.refuse(node, "None compares with == or != only")
                    col = right if left is None else left
                    if not hasattr(col, "isna"):
                        res = (col is None) == isinstance(op, ast.Eq)
                    else:
                        res = col.isna() if isinstance(op, ast.Eq) else col.notna()
                else:
                    res = _CMP[type(op)](left, right)
            else:
                raise self.refuse(node, f"the operator {type(op).__name__}")
            out = res if out is None else (out & res)
            left = right
        return out

    def call(self, node: ast.Call) -> Any:
        if not (isinstance(node.func, ast.Name) and node.func.id in ("isna", "notna")):
            raise self.refuse(node, "the only functions are isna(column) and "
                                    "notna(column)")
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Name):
            raise self.refuse(node, f"{node.func.id} takes one column name")
        col = self.value(node.args[0])
        if not hasattr(col, "isna"):
            raise self.refuse(node, f"{node.func.id} takes a column, not a literal")
        return col.isna() if node.func.id == "isna" else col.notna()

    def literal(self, node: ast.AST) -> Any:
        v = self.value(node)
        if hasattr(v, "isna"):
            raise self.refuse(node, "a list after `in` holds literals, not columns")
        return v


def _numeric(col) -> bool:
    import pandas as pd
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _describe(node: ast.AST) -> str:
    return {ast.Attribute: "attribute access", ast.Subscript: "indexing",
            ast.Lambda: "a lambda", ast.ListComp: "a comprehension",
            ast.GeneratorExp: "a comprehension", ast.DictComp: "a comprehension",
            ast.SetComp: "a comprehension", ast.IfExp: "a conditional expression",
            ast.NamedExpr: "an assignment", ast.Starred: "unpacking",
            ast.JoinedStr: "an f-string", ast.Dict: "a dict", ast.List: "a list outside "
            "`in`", ast.Tuple: "a tuple outside `in`", ast.Await: "await",
            ast.Yield: "yield", ast.BinOp: "only + - * / and & | are operators here",
            ast.UnaryOp: "only -, not and ~ go before a value"}.get(type(node),
                                                                     type(node).__name__)
