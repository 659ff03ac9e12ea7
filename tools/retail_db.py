"""SQLite storage for the retail domain: schema, loading db.json, reading records.

Records read from the database have exactly the shape of the entries in
db.json, so a dump of a fresh database equals the file it was built from.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
"""Stored in `PRAGMA user_version`; a file with another value is not opened."""

_ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")

# Nested leaf data (addresses aside) is stored as JSON text. Items, payment
# methods, variants, fulfillments and transactions are rows, so tools can
# query and update them one at a time. Top-level tables keep db.json's order
# through their rowid; child tables carry an explicit `position`.
_SCHEMA = """
CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE variants (
    item_id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products (product_id),
    position INTEGER NOT NULL,
    options TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available IN (0, 1)),
    price REAL NOT NULL,
    UNIQUE (item_id, product_id)
);
CREATE INDEX variants_by_product ON variants (product_id, position);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL,
    address1 TEXT NOT NULL,
    address2 TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    country TEXT NOT NULL,
    zip TEXT NOT NULL
);
CREATE INDEX users_by_zip ON users (zip);
CREATE INDEX users_by_email ON users (lower(email));
CREATE TABLE payment_methods (
    payment_method_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    position INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('credit_card', 'paypal', 'gift_card')),
    brand TEXT,
    last_four TEXT,
    balance REAL CHECK (balance >= 0),
    CHECK ((source = 'gift_card') = (balance IS NOT NULL))
);
CREATE INDEX payment_methods_by_user ON payment_methods (user_id, position);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    user_position INTEGER NOT NULL,
    address1 TEXT NOT NULL,
    address2 TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT NOT NULL,
    country TEXT NOT NULL,
    zip TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    return_items TEXT,
    return_payment_method_id TEXT REFERENCES payment_methods (payment_method_id),
    exchange_items TEXT,
    exchange_new_items TEXT,
    exchange_payment_method_id TEXT REFERENCES payment_methods (payment_method_id),
    exchange_price_difference REAL,
    UNIQUE (user_id, user_position)
);
CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    position INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    price REAL NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (order_id, position),
    FOREIGN KEY (item_id, product_id) REFERENCES variants (item_id, product_id)
);
CREATE TABLE fulfillments (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    position INTEGER NOT NULL,
    tracking_ids TEXT NOT NULL,
    item_ids TEXT NOT NULL,
    PRIMARY KEY (order_id, position)
);
CREATE TABLE payment_transactions (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    position INTEGER NOT NULL,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN ('payment', 'refund')),
    amount REAL NOT NULL CHECK (amount >= 0),
    payment_method_id TEXT NOT NULL
        REFERENCES payment_methods (payment_method_id),
    PRIMARY KEY (order_id, position)
);
CREATE TABLE effects (
    idempotency_key TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    arguments_digest TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

# Order keys that db.json carries only once an action has set them.
_OPTIONAL_ORDER_TEXT = ("cancel_reason", "return_payment_method_id",
                        "exchange_payment_method_id")
_OPTIONAL_ORDER_LISTS = ("return_items", "exchange_items", "exchange_new_items")


def connect(sqlite_path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Open an existing retail database with foreign keys on and manual transactions.

    The connection is in autocommit mode (`isolation_level=None`), so the
    caller opens every transaction with an explicit `BEGIN`.

    Raises:
        FileNotFoundError: `sqlite_path` does not exist; it is never created here.
        ValueError: the file is not a retail database of `SCHEMA_VERSION`.
    """
    path = Path(sqlite_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"retail database {str(path)!r} not found; create it with build_database()"
        )
    conn = sqlite3.connect(
        f"{path.as_uri()}?mode=rw",
        uri=True,
        timeout=busy_timeout_s,
        isolation_level=None,
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{str(path)!r} has schema version {version}, expected "
                f"{SCHEMA_VERSION}; rebuild it with build_database(overwrite=True)"
            )
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def open_database(
    sqlite_path: Path, *, busy_timeout_s: float
) -> Iterator[sqlite3.Connection]:
    """Yield a connection from `connect` and close it on exit."""
    conn = connect(sqlite_path, busy_timeout_s=busy_timeout_s)
    try:
        yield conn
    finally:
        conn.close()


def build_database(
    db_json: Path, sqlite_path: Path, *, overwrite: bool = False
) -> None:
    """Create a retail SQLite database at `sqlite_path` from a db.json file.

    The database is written to a temporary file beside `sqlite_path`, checked
    to dump back to exactly the JSON it was built from, switched to WAL mode
    and then moved into place with `os.replace`, so readers never see a
    half-built file.

    Args:
        db_json: A JSON file with `users`, `orders` and `products` objects.
        sqlite_path: Where to put the database.
        overwrite: Replace an existing file. Close every store using the old
            file first, because its WAL files are deleted.

    Raises:
        FileExistsError: `sqlite_path` exists and `overwrite` is false.
        ValueError: db.json is malformed, refers to missing records, or
            contains fields the schema does not store.
    """
    db_json = Path(db_json)
    sqlite_path = Path(sqlite_path)
    if sqlite_path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(sqlite_path)!r} already exists; pass overwrite=True to replace it"
        )
    data = json.loads(db_json.read_text(encoding="utf-8"))

    fd, temp_name = tempfile.mkstemp(
        dir=sqlite_path.parent, prefix=f".{sqlite_path.name}.", suffix=".tmp"
    )
    os.close(fd)
    temp_path = Path(temp_name)
    try:
        conn = sqlite3.connect(temp_path, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            _insert_all(conn, data, source=db_json)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            conn.row_factory = sqlite3.Row
            if dump_database(conn) != data:
                raise ValueError(
                    f"{str(db_json)!r} does not read back unchanged, so it contains "
                    "fields the retail schema does not store; remove them or extend "
                    "the schema"
                )
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        if overwrite:
            for suffix in ("-wal", "-shm"):
                Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        os.replace(temp_path, sqlite_path)
    except BaseException:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{temp_path}{suffix}").unlink(missing_ok=True)
        raise


def _insert_all(conn: sqlite3.Connection, data: Any, *, source: Path) -> None:
    for key in ("products", "users", "orders"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise ValueError(
                f"{str(source)!r} has no {key!r} object; expected the retail db.json "
                "with top-level 'products', 'users' and 'orders'"
            )
    kind, record_id = "product", ""
    try:
        for record_id, product in data["products"].items():
            _check_key(record_id, product, "product_id")
            _insert_product(conn, product)
        kind = "user"
        for record_id, user in data["users"].items():
            _check_key(record_id, user, "user_id")
            _insert_user(conn, user)
        order_owners = {
            order_id: (user_id, index)
            for user_id, user in data["users"].items()
            for index, order_id in enumerate(user["orders"])
        }
        kind = "order"
        for record_id, order in data["orders"].items():
            _check_key(record_id, order, "order_id")
            owner = order_owners.get(record_id)
            if owner is None or owner[0] != order["user_id"]:
                raise ValueError(
                    f"missing from the 'orders' list of user {order['user_id']!r}"
                )
            _insert_order(conn, order, user_position=owner[1])
    except (KeyError, TypeError, AttributeError, ValueError, sqlite3.Error) as error:
        raise ValueError(
            f"invalid retail data in {str(source)!r} at {kind} {record_id!r}: "
            f"{type(error).__name__}: {error}"
        ) from error


def _check_key(key: str, record: dict, id_field: str) -> None:
    if record[id_field] != key:
        raise ValueError(f"{id_field} {record[id_field]!r} differs from its key")


def _insert_product(conn: sqlite3.Connection, product: dict) -> None:
    conn.execute(
        "INSERT INTO products (product_id, name) VALUES (?, ?)",
        (product["product_id"], product["name"]),
    )
    for position, (item_id, variant) in enumerate(product["variants"].items()):
        _check_key(item_id, variant, "item_id")
        conn.execute(
            "INSERT INTO variants (item_id, product_id, position, options, available,"
            " price) VALUES (?, ?, ?, ?, ?, ?)",
            (
                item_id,
                product["product_id"],
                position,
                json.dumps(variant["options"]),
                bool(variant["available"]),
                variant["price"],
            ),
        )


def _insert_user(conn: sqlite3.Connection, user: dict) -> None:
    address = user["address"]
    conn.execute(
        "INSERT INTO users (user_id, first_name, last_name, email, address1, address2,"
        " city, state, country, zip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user["user_id"],
            user["name"]["first_name"],
            user["name"]["last_name"],
            user["email"],
            *(address[field] for field in _ADDRESS_FIELDS),
        ),
    )
    for position, (method_id, method) in enumerate(user["payment_methods"].items()):
        _check_key(method_id, method, "id")
        conn.execute(
            "INSERT INTO payment_methods (payment_method_id, user_id, position, source,"
            " brand, last_four, balance) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                method_id,
                user["user_id"],
                position,
                method["source"],
                method.get("brand"),
                method.get("last_four"),
                method.get("balance"),
            ),
        )


def _insert_order(conn: sqlite3.Connection, order: dict, *, user_position: int) -> None:
    address = order["address"]
    optional_lists = [
        json.dumps(order[key]) if key in order else None
        for key in _OPTIONAL_ORDER_LISTS
    ]
    conn.execute(
        "INSERT INTO orders (order_id, user_id, user_position, address1, address2,"
        " city, state, country, zip, status, cancel_reason, return_payment_method_id,"
        " exchange_payment_method_id, return_items, exchange_items, exchange_new_items,"
        " exchange_price_difference)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            order["order_id"],
            order["user_id"],
            user_position,
            *(address[field] for field in _ADDRESS_FIELDS),
            order["status"],
            *(order.get(key) for key in _OPTIONAL_ORDER_TEXT),
            *optional_lists,
            order.get("exchange_price_difference"),
        ),
    )
    for position, item in enumerate(order["items"]):
        conn.execute(
            "INSERT INTO order_items (order_id, position, item_id, product_id, name,"
            " price, options) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                order["order_id"],
                position,
                item["item_id"],
                item["product_id"],
                item["name"],
                item["price"],
                json.dumps(item["options"]),
            ),
        )
    for position, fulfillment in enumerate(order["fulfillments"]):
        conn.execute(
            "INSERT INTO fulfillments (order_id, position, tracking_ids, item_ids)"
            " VALUES (?, ?, ?, ?)",
            (
                order["order_id"],
                position,
                json.dumps(fulfillment["tracking_id"]),
                json.dumps(fulfillment["item_ids"]),
            ),
        )
    for position, payment in enumerate(order["payment_history"]):
        append_transaction(
            conn,
            order["order_id"],
            position=position,
            transaction_type=payment["transaction_type"],
            amount=payment["amount"],
            payment_method_id=payment["payment_method_id"],
        )


def append_transaction(
    conn: sqlite3.Connection,
    order_id: str,
    *,
    transaction_type: str,
    amount: float,
    payment_method_id: str,
    position: int | None = None,
) -> None:
    """Insert one `payment_history` entry, at the end unless `position` is given."""
    if position is None:
        position = conn.execute(
            "SELECT count(*) FROM payment_transactions WHERE order_id = ?", (order_id,)
        ).fetchone()[0]
    conn.execute(
        "INSERT INTO payment_transactions (order_id, position, transaction_type,"
        " amount, payment_method_id) VALUES (?, ?, ?, ?, ?)",
        (order_id, position, transaction_type, amount, payment_method_id),
    )


def _address(row: sqlite3.Row) -> dict[str, str]:
    return {field: row[field] for field in _ADDRESS_FIELDS}


def _filter(column: str, value: str | None) -> tuple[str, tuple[Any, ...]]:
    if value is None:
        return "", ()
    return f"WHERE {column} = ?", (value,)


def read_products(
    conn: sqlite3.Connection, product_id: str | None = None
) -> dict[str, dict]:
    """Return products by id in db.json's shape, only `product_id` if given."""
    where, params = _filter("product_id", product_id)
    products = {
        row["product_id"]: {
            "name": row["name"],
            "product_id": row["product_id"],
            "variants": {},
        }
        for row in conn.execute(
            f"SELECT product_id, name FROM products {where} ORDER BY rowid", params
        )
    }
    for row in conn.execute(
        f"SELECT * FROM variants {where} ORDER BY product_id, position", params
    ):
        products[row["product_id"]]["variants"][row["item_id"]] = variant_from_row(row)
    return products


def variant_from_row(row: sqlite3.Row) -> dict[str, Any]:
    """Convert a `variants` row to db.json's variant shape."""
    return {
        "item_id": row["item_id"],
        "options": json.loads(row["options"]),
        "available": bool(row["available"]),
        "price": row["price"],
    }


def read_users(conn: sqlite3.Connection, user_id: str | None = None) -> dict[str, dict]:
    """Return users by id in db.json's shape, only `user_id` if given."""
    where, params = _filter("user_id", user_id)
    users = {
        row["user_id"]: {
            "user_id": row["user_id"],
            "name": {"first_name": row["first_name"], "last_name": row["last_name"]},
            "address": _address(row),
            "email": row["email"],
            "payment_methods": {},
            "orders": [],
        }
        for row in conn.execute(f"SELECT * FROM users {where} ORDER BY rowid", params)
    }
    for row in conn.execute(
        f"SELECT * FROM payment_methods {where} ORDER BY user_id, position", params
    ):
        users[row["user_id"]]["payment_methods"][row["payment_method_id"]] = (
            payment_method_from_row(row)
        )
    for row in conn.execute(
        f"SELECT user_id, order_id FROM orders {where} ORDER BY user_id, user_position",
        params,
    ):
        users[row["user_id"]]["orders"].append(row["order_id"])
    return users


def payment_method_from_row(row: sqlite3.Row) -> dict[str, Any]:
    """Convert a `payment_methods` row to db.json's shape, without the absent fields."""
    method: dict[str, Any] = {"source": row["source"], "id": row["payment_method_id"]}
    for field in ("brand", "last_four", "balance"):
        if row[field] is not None:
            method[field] = row[field]
    return method


def read_orders(
    conn: sqlite3.Connection, order_id: str | None = None
) -> dict[str, dict]:
    """Return orders by id in db.json's shape, only `order_id` if given."""
    where, params = _filter("order_id", order_id)
    orders: dict[str, dict] = {}
    for row in conn.execute(f"SELECT * FROM orders {where} ORDER BY rowid", params):
        order: dict[str, Any] = {
            "order_id": row["order_id"],
            "user_id": row["user_id"],
            "address": _address(row),
            "items": [],
            "status": row["status"],
            "fulfillments": [],
            "payment_history": [],
        }
        for key in _OPTIONAL_ORDER_TEXT:
            if row[key] is not None:
                order[key] = row[key]
        for key in _OPTIONAL_ORDER_LISTS:
            if row[key] is not None:
                order[key] = json.loads(row[key])
        if row["exchange_price_difference"] is not None:
            order["exchange_price_difference"] = row["exchange_price_difference"]
        orders[row["order_id"]] = order

    for row in conn.execute(
        f"SELECT * FROM order_items {where} ORDER BY order_id, position", params
    ):
        orders[row["order_id"]]["items"].append(
            {
                "name": row["name"],
                "product_id": row["product_id"],
                "item_id": row["item_id"],
                "price": row["price"],
                "options": json.loads(row["options"]),
            }
        )
    for row in conn.execute(
        f"SELECT * FROM fulfillments {where} ORDER BY order_id, position", params
    ):
        orders[row["order_id"]]["fulfillments"].append(
            {
                "tracking_id": json.loads(row["tracking_ids"]),
                "item_ids": json.loads(row["item_ids"]),
            }
        )
    for row in conn.execute(
        f"SELECT * FROM payment_transactions {where} ORDER BY order_id, position",
        params,
    ):
        orders[row["order_id"]]["payment_history"].append(
            {
                "transaction_type": row["transaction_type"],
                "amount": row["amount"],
                "payment_method_id": row["payment_method_id"],
            }
        )
    return orders


def dump_database(conn: sqlite3.Connection) -> dict[str, dict]:
    """Return the whole database in db.json's shape, read in one transaction.

    The connection must use `sqlite3.Row` rows and have no open transaction.
    """
    conn.execute("BEGIN")
    try:
        return {
            "products": read_products(conn),
            "users": read_users(conn),
            "orders": read_orders(conn),
        }
    finally:
        conn.execute("ROLLBACK")
