"""SQLAlchemy integration: the mapper is the source of truth.

``register_models(session, Base)`` registers the tables of a declarative Base
(or a ``MetaData``) as harbor models and declares every mapped relationship
under the mapper's attribute name, with its foreign keys, so include paths are
the Python names.  ``load``/``get``/``find`` make one round trip through
``harbor.load``/``harbor.find`` and put the result into the Session as
persistent instances, with the included relationships populated (touching them
emits no SQL) and identity-map semantics: an object already in the Session is
the one returned.
"""
import datetime as _dt
import decimal
import functools
import json
import uuid

from sqlalchemy import types as sqltypes
from sqlalchemy import MetaData, Table, inspect
from sqlalchemy.orm.attributes import InstrumentedAttribute, instance_state, set_committed_value
from sqlalchemy.orm import make_transient_to_detached

try:
    from sqlalchemy.orm.interfaces import MANYTOONE, ONETOMANY
except ImportError:  # pragma: no cover - layouts of later versions
    from sqlalchemy.orm.base import MANYTOONE, ONETOMANY

from . import _conn

__all__ = ["register_models", "load", "get", "find", "model_name"]

# model name per Table, filled by register_models (weak enough: tables live for the process)
_MODEL_NAMES = {}


def _qualified(table):
    q = '"%s"' % table.name.replace('"', '""')
    if table.schema:
        q = '"%s".%s' % (table.schema.replace('"', '""'), q)
    return q


def model_name(table):
    """The harbor model name of a Table (or mapped class)."""
    if not isinstance(table, Table):
        table = inspect(table).local_table
    name = _MODEL_NAMES.get(table)
    if name is None:
        name = table.name if not table.schema else "%s_%s" % (table.schema, table.name)
    return name


def _tables_and_mappers(base):
    if isinstance(base, MetaData):
        return list(base.sorted_tables), []
    md = base.metadata
    registry = getattr(base, "registry", None)
    mappers = list(registry.mappers) if registry is not None else []
    return list(md.sorted_tables), mappers


def _exec(session, sql, params):
    return _conn.execute(session, sql, params)


def register_models(session, base, relationships=True):
    """Register every table with a primary key of ``base`` (a declarative Base or
    a MetaData) and declare each relationship of its mappers.

    Runs in the caller's transaction (commit it to keep the registration).
    Returns the list of model names registered.
    """
    tables, mappers = _tables_and_mappers(base)
    names = []
    for t in tables:
        if not t.primary_key.columns:
            continue
        rel = _qualified(t)
        cols, rows = _exec(session, "SELECT name FROM harbor.models WHERE relation = "
                           "CAST(%(rel)s AS regclass)", {"rel": rel})
        if rows:
            name = rows[0][0]
        else:
            name = t.name if not t.schema else "%s_%s" % (t.schema, t.name)
            _exec(session, "SELECT harbor.register_model(CAST(%(rel)s AS regclass), "
                  "CAST(%(name)s AS text))", {"rel": rel, "name": name})
        _MODEL_NAMES[t] = name
        names.append(name)
    if relationships:
        for m in mappers:
            for prop in m.relationships:
                _declare(session, m, prop)
    return names


def _declare(session, mapper, prop):
    src = mapper.local_table
    dst = prop.mapper.local_table
    if not isinstance(src, Table) or not isinstance(dst, Table):
        return
    params = {"model": model_name(src), "name": prop.key, "target": model_name(dst),
              "fk": None, "secondary": None, "kind": None}
    if prop.secondary is not None:
        params["kind"] = "many_to_many"
        params["secondary"] = _qualified(prop.secondary)
        params["fk"] = [sec.name for _, sec in prop.synchronize_pairs]
    elif prop.direction is MANYTOONE:
        params["kind"] = "many_to_one"
        params["fk"] = [l.name for l, _ in prop.local_remote_pairs]
    elif prop.direction is ONETOMANY:
        params["kind"] = "one_to_many" if prop.uselist else "one_to_one"
        params["fk"] = [r.name for _, r in prop.local_remote_pairs]
    else:
        return
    _exec(session, "SELECT harbor.register_relationship(CAST(%(model)s AS text), "
          "CAST(%(name)s AS text), CAST(%(target)s AS text), CAST(%(fk)s AS text[]), "
          "CAST(%(secondary)s AS regclass), CAST(%(kind)s AS text))", params)


# ---------------------------------------------------------------------------
# JSON values back to Python values

def _to_float(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, list):
        return [_to_float(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_float(x) for k, x in v.items()}
    return v


_INF = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def _converter(typ, dialect):
    """A function turning the to_jsonb rendering of a column into its Python value."""
    if isinstance(typ, sqltypes.TypeDecorator):
        inner = _converter(typ.impl, dialect)
        proc = typ.process_result_value
        return lambda v: proc(inner(v), dialect)
    if isinstance(typ, sqltypes.JSON) or getattr(typ, "__visit_name__", "") in ("JSON", "JSONB"):
        return _to_float
    if isinstance(typ, sqltypes.Boolean):
        return None
    if isinstance(typ, sqltypes.Integer):
        return None
    if isinstance(typ, sqltypes.Float):
        return lambda v: _INF[v] if isinstance(v, str) else float(v)
    if isinstance(typ, sqltypes.Numeric):
        if typ.asdecimal:
            return lambda v: decimal.Decimal(v) if isinstance(v, str) else (
                v if isinstance(v, decimal.Decimal) else decimal.Decimal(v))
        return lambda v: _INF[v] if isinstance(v, str) else float(v)
    if isinstance(typ, sqltypes.DateTime):
        return _dt.datetime.fromisoformat
    if isinstance(typ, sqltypes.Date):
        return _dt.date.fromisoformat
    if isinstance(typ, sqltypes.Time):
        return _dt.time.fromisoformat
    if isinstance(typ, sqltypes.LargeBinary):
        return lambda v: bytes.fromhex(v[2:]) if v.startswith("\\x") else v.encode()
    if isinstance(typ, sqltypes.Enum):
        if typ.enum_class is not None:
            return lambda v: typ._object_value_for_elem(v)
        return None
    if isinstance(typ, sqltypes.ARRAY):
        item = _converter(typ.item_type, dialect)
        if item is None:
            return None

        def arr(v):
            return [arr(x) if isinstance(x, list) else (None if x is None else item(x)) for x in v]
        return arr
    if getattr(typ, "__visit_name__", "") == "UUID" or isinstance(typ, getattr(sqltypes, "Uuid", ())):
        if getattr(typ, "as_uuid", False):
            return uuid.UUID
        return None
    return None


class _ModelInfo:
    """Per mapper: column keys and converters, relationships by name."""

    def __init__(self, mapper, dialect):
        self.mapper = mapper
        self.columns = []   # (json key, attribute key, converter)
        for prop in mapper.column_attrs:
            if len(prop.columns) != 1:
                continue
            col = prop.columns[0]
            if getattr(col, "table", None) is not mapper.local_table:
                continue
            self.columns.append((col.name, prop.key, _converter(col.type, dialect)))
        self.pk_cols = [c.name for c in mapper.primary_key]
        self.pk_conv = [(c.name, _converter(c.type, dialect)) for c in mapper.primary_key]
        self.rels = {r.key: r for r in mapper.relationships}
        # harbor orders collections by the target's primary key; a relationship
        # with its own order_by (plain columns, asc/desc) is re-sorted here
        self.sorts = {}
        for r in mapper.relationships:
            if r.uselist and r.order_by:
                keys = _sort_keys(r)
                if keys:
                    self.sorts[r.key] = keys


def _sort_keys(rel):
    out = []
    for el in rel.order_by:
        desc = False
        mod = getattr(el, "modifier", None)
        if mod is not None:
            desc = getattr(mod, "__name__", "").startswith("desc")
            el = el.element
        try:
            key = rel.mapper.get_property_by_column(el).key
        except Exception:
            return None         # an expression: keep harbor's primary-key order
        out.append((key, desc))
    return out


def _sorter(keys):
    def cmp(a, b):
        for key, desc in keys:
            x, y = getattr(a, key), getattr(b, key)
            if x == y:
                continue
            if x is None or y is None:           # NULLS LAST ascending, FIRST descending
                r = 1 if x is None else -1
            else:
                r = -1 if x < y else 1
            return -r if desc else r
        return 0
    return functools.cmp_to_key(cmp)


_INFO = {}


def _info(mapper, dialect):
    key = (mapper, dialect.name)
    inf = _INFO.get(key)
    if inf is None:
        inf = _INFO[key] = _ModelInfo(mapper, dialect)
    return inf


def _path_of(item):
    if isinstance(item, str):
        return item
    if isinstance(item, InstrumentedAttribute):
        return item.key
    if isinstance(item, (list, tuple)):
        return ".".join(_path_of(i) for i in item)
    raise TypeError("include items are relationship attributes, dotted strings or "
                    "sequences of attributes")


def _tree(include):
    tree = {}
    for item in include or ():
        node = tree
        for seg in _path_of(item).split("."):
            node = node.setdefault(seg.strip(), {})
    return tree


def _paths(tree, prefix=""):
    out = []
    for k, sub in tree.items():
        p = prefix + k
        out.append(p)
        out.extend(_paths(sub, p + "."))
    return out


class _Builder:
    """Turns the JSON tree into instances in the Session's identity map.

    New instances are attached the way SQLAlchemy's own loading does it (the
    identity key set, the state added to the identity map, values written
    into the instance dict as committed values), so no flush and no history
    is involved; ``Session.add`` is used as a fallback on versions whose
    internals differ."""

    def __init__(self, session):
        self.session = session
        self.dialect = session.get_bind().dialect
        self.seen = {}         # identity key -> instance, within this call
        self.imap = session.identity_map
        self.fast = hasattr(self.imap, "_add_unpresent") and hasattr(session, "hash_key")
        self.slow_new = []
        evt = session.dispatch.loaded_as_persistent
        self.loaded_evt = evt if evt else None

    def build(self, mapper, obj, tree):
        inf = _info(mapper, self.dialect)
        pkv = []
        for c, conv in inf.pk_conv:
            v = obj.get(c)
            pkv.append(v if conv is None or v is None else conv(v))
        key = mapper.identity_key_from_primary_key(pkv)
        inst = self.seen.get(key)
        fresh = False
        if inst is None:
            inst = self.imap.get(key)
            if inst is None:
                inst = mapper.class_manager.new_instance()
                fresh = True
                state = instance_state(inst)
                dict_ = state.dict
                for (jkey, akey, conv) in inf.columns:
                    if jkey in obj:
                        v = obj[jkey]
                        dict_[akey] = v if conv is None or v is None else conv(v)
                if self.fast:
                    state.key = key
                    state.identity_token = None
                    state.session_id = self.session.hash_key
                    self.imap._add_unpresent(state, key)
                    if self.loaded_evt is not None:
                        self.loaded_evt(self.session, state)
                else:
                    self.slow_new.append(inst)
            else:
                # already in the Session: fill only what is not loaded (expired
                # or deferred), never overwrite pending changes
                unloaded = instance_state(inst).unloaded
                for (jkey, akey, conv) in inf.columns:
                    if akey in unloaded and jkey in obj:
                        v = obj[jkey]
                        set_committed_value(inst, akey, v if conv is None or v is None else conv(v))
            self.seen[key] = inst
        state = instance_state(inst)
        for name, sub in tree.items():
            rel = inf.rels.get(name)
            if rel is None or name not in obj:
                continue
            loaded = name in state.dict
            val = obj[name]
            target = rel.mapper
            if rel.uselist:
                built = [self.build(target, o, sub) for o in (val or ())]
                sort = inf.sorts.get(name)
                if sort is not None and len(built) > 1:
                    built.sort(key=_sorter(sort))
            else:
                built = None if val is None else self.build(target, val, sub)
            if loaded:
                continue
            if rel.uselist or not fresh:
                set_committed_value(inst, name, built)
            else:
                state.dict[name] = built
        return inst

    def attach(self):
        for inst in self.slow_new:
            make_transient_to_detached(inst)
        for inst in self.slow_new:
            self.session.add(inst)


def _roots(session, cls, text_result, include):
    mapper = inspect(cls)
    data = json.loads(text_result, parse_float=decimal.Decimal) if text_result else None
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data]
    b = _Builder(session)
    tree = _tree(include)
    with session.no_autoflush:
        out = [b.build(mapper, o, tree) for o in data]
        b.attach()
    return out


def _pk_array_type(session, mapper):
    if len(mapper.primary_key) != 1:
        raise NotImplementedError("load/get with a composite primary key: use find()")
    return mapper.primary_key[0].type.compile(dialect=session.get_bind().dialect)


def _id_param(v):
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def _autoflush(session):
    if getattr(session, "autoflush", False) and (session.new or session.dirty or session.deleted):
        session._autoflush()


def load(session, cls, ids, include=()):
    """The instances of ``cls`` with primary keys ``ids``, in that order, with the
    relationships of ``include`` populated; one round trip (``harbor.load``)."""
    mapper = inspect(cls)
    _autoflush(session)
    typ = _pk_array_type(session, mapper)
    sql = ("SELECT CAST(harbor.load(CAST(%(model)s AS text), CAST(%(ids)s AS " + typ +
           "[]), CAST(%(include)s AS text[])) AS text)")
    _, rows = _conn.execute(session, sql, {"model": model_name(mapper.local_table),
                                           "ids": [_id_param(i) for i in ids],
                                           "include": _paths(_tree(include))})
    return _roots(session, cls, rows[0][0], include)


def get(session, cls, id, include=()):
    """One instance or None, like ``session.get`` with loader options."""
    r = load(session, cls, [id], include)
    return r[0] if r else None


def _json_default(v):
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (decimal.Decimal, uuid.UUID)):
        return str(v)
    raise TypeError("cannot send %r in a filter" % (v,))


def _order_item(cls, item):
    if isinstance(item, str):
        return item
    # an attribute, or attribute.desc()/asc()
    mod = getattr(item, "modifier", None)
    el = getattr(item, "element", None)
    if mod is not None and el is not None:
        direction = "desc" if mod.__name__.startswith("desc") else "asc"
        return "%s %s" % (_col_name(el), direction)
    return _col_name(item)


def _col_name(attr):
    expr = getattr(attr, "expression", attr)
    name = getattr(expr, "name", None)
    if name is None:
        raise TypeError("order_by items are column names or column attributes")
    return name


def find(session, cls, filter=None, include=(), order_by=None, limit=None, offset=0):
    """Instances of ``cls`` matching ``filter`` (harbor.find's JSON filter, keyed by
    column name), ordered and limited, with ``include`` populated; one round trip."""
    mapper = inspect(cls)
    _autoflush(session)
    flt = {}
    for k, v in (filter or {}).items():
        if isinstance(k, InstrumentedAttribute):
            k = _col_name(k)
        flt[k] = v
    ob = None if order_by is None else [_order_item(cls, o) for o in (
        order_by if isinstance(order_by, (list, tuple)) else [order_by])]
    sql = ("SELECT CAST(harbor.find(CAST(%(model)s AS text), CAST(%(filter)s AS jsonb), "
           "CAST(%(include)s AS text[]), CAST(%(order_by)s AS text[]), CAST(%(lim)s AS integer), "
           "CAST(%(offs)s AS integer)) AS text)")
    _, rows = _conn.execute(session, sql, {
        "model": model_name(mapper.local_table),
        "filter": json.dumps(flt, default=_json_default),
        "include": _paths(_tree(include)), "order_by": ob, "lim": limit, "offs": offset or 0})
    return _roots(session, cls, rows[0][0], include)
