"""Stateful tool sets for the procedural tasks: a bank, a shop, a file system, a calendar.

Each is a plain class whose public methods are the tools (schemas from their hints and
docstrings), built fresh from a config every episode. ``_state()`` is what the procedural
goals are checked on; ``_fail_once`` names methods that fail once with a transient error
(the "recovery" difficulty knob: the model must notice and call again).
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any

__all__ = ["TOOLSETS", "Bank", "FileSystem", "Shop"]


class TransientError(RuntimeError):
    """A failure that goes away when the same call is made again."""


class _Base:
    def __init__(self, fail_once: list[str] | None = None) -> None:
        self._fail_once = set(fail_once or ())

    def _maybe_fail(self, method: str) -> None:
        if method in self._fail_once:
            self._fail_once.discard(method)
            raise TransientError("the service is temporarily unavailable (error 503); "
                                 "nothing was changed. Make the same call again.")

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError


class Bank(_Base):
    """Bank accounts with balances in whole dollars."""

    def __init__(self, accounts: dict[str, dict[str, Any]],
                 fail_once: list[str] | None = None) -> None:
        super().__init__(fail_once)
        self.accounts = copy.deepcopy(accounts)

    def find_account(self, owner: str) -> str:
        """Find the id of the account held by a person.

        Args:
            owner: The account holder's full name, e.g. "Ada Lovelace".
        """
        for acct, info in sorted(self.accounts.items()):
            if info["owner"].lower() == owner.strip().lower():
                return acct
        raise KeyError(f"no account is held by {owner!r}")

    def get_balance(self, account_id: str) -> int:
        """The balance of an account, in dollars.

        Args:
            account_id: The account id, e.g. "AC-1042".
        """
        if account_id not in self.accounts:
            raise KeyError(f"unknown account {account_id!r}")
        return self.accounts[account_id]["balance"]

    def transfer(self, from_account: str, to_account: str, amount: int) -> dict[str, Any]:
        """Move money between two accounts.

        Args:
            from_account: Id of the account to take the money from.
            to_account: Id of the account to pay into.
            amount: Whole dollars, more than 0.
        """
        self._maybe_fail("transfer")
        for acct in (from_account, to_account):
            if acct not in self.accounts:
                raise KeyError(f"unknown account {acct!r}")
        if from_account == to_account:
            raise ValueError("from_account and to_account must differ")
        if amount <= 0:
            raise ValueError(f"amount must be > 0, got {amount}")
        if self.accounts[from_account]["balance"] < amount:
            raise ValueError(f"insufficient funds in {from_account}")
        self.accounts[from_account]["balance"] -= amount
        self.accounts[to_account]["balance"] += amount
        return {"from_balance": self.accounts[from_account]["balance"],
                "to_balance": self.accounts[to_account]["balance"]}

    def _state(self) -> dict[str, Any]:
        return {a: i["balance"] for a, i in sorted(self.accounts.items())}


class Shop(_Base):
    """A shop with an inventory and orders."""

    def __init__(self, inventory: dict[str, dict[str, Any]],
                 fail_once: list[str] | None = None) -> None:
        super().__init__(fail_once)
        self.inventory = copy.deepcopy(inventory)
        self.orders: dict[str, dict[str, Any]] = {}

    def search_products(self, query: str) -> list[dict[str, Any]]:
        """Products whose name contains the query (case-insensitive).

        Args:
            query: Words to look for, e.g. "kettle".
        """
        q = query.strip().lower()
        return [{"sku": sku, **info} for sku, info in sorted(self.inventory.items())
                if q and q in info["name"].lower()]

    def place_order(self, sku: str, quantity: int) -> dict[str, Any]:
        """Order a product; its stock goes down.

        Args:
            sku: The product's SKU, e.g. "SKU-311".
            quantity: How many, at least 1.
        """
        self._maybe_fail("place_order")
        if sku not in self.inventory:
            raise KeyError(f"unknown sku {sku!r}")
        if quantity < 1:
            raise ValueError(f"quantity must be >= 1, got {quantity}")
        item = self.inventory[sku]
        if item["stock"] < quantity:
            raise ValueError(f"only {item['stock']} of {sku} in stock")
        item["stock"] -= quantity
        order_id = f"ORD-{len(self.orders) + 1}"
        self.orders[order_id] = {"sku": sku, "quantity": quantity}
        return {"order_id": order_id, "total": item["price"] * quantity}

    def cancel_order(self, order_id: str) -> str:
        """Cancel an order; its items go back into stock.

        Args:
            order_id: The id place_order returned.
        """
        order = self.orders.pop(order_id, None)
        if order is None:
            raise KeyError(f"unknown order {order_id!r}")
        self.inventory[order["sku"]]["stock"] += order["quantity"]
        return f"cancelled {order_id}"

    def _state(self) -> dict[str, Any]:
        ordered: dict[str, int] = {}
        for o in self.orders.values():
            ordered[o["sku"]] = ordered.get(o["sku"], 0) + o["quantity"]
        return {"stock": {s: i["stock"] for s, i in sorted(self.inventory.items())},
                "ordered": dict(sorted(ordered.items()))}


class FileSystem(_Base):
    """A small in-memory file system (absolute paths, text files)."""

    def __init__(self, files: dict[str, str], fail_once: list[str] | None = None) -> None:
        super().__init__(fail_once)
        self.files = dict(files)

    @staticmethod
    def _norm(path: str) -> str:
        return posixpath.normpath("/" + path.strip().lstrip("/"))

    def list_files(self, directory: str = "/") -> list[str]:
        """Paths of the files under a directory, sorted.

        Args:
            directory: An absolute directory path, e.g. "/docs".
        """
        d = self._norm(directory).rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(d))

    def read_file(self, path: str) -> str:
        """The text of a file.

        Args:
            path: The file's absolute path.
        """
        p = self._norm(path)
        if p not in self.files:
            raise FileNotFoundError(f"no such file: {p}")
        return self.files[p]

    def write_file(self, path: str, content: str) -> str:
        """Create or overwrite a file.

        Args:
            path: The file's absolute path.
            content: The new text of the file.
        """
        self._maybe_fail("write_file")
        p = self._norm(path)
        self.files[p] = content
        return f"wrote {len(content)} characters to {p}"

    def move_file(self, source: str, destination: str) -> str:
        """Move (rename) a file.

        Args:
            source: The file's absolute path.
            destination: Its new absolute path (a full file path, not a directory).
        """
        self._maybe_fail("move_file")
        s, d = self._norm(source), self._norm(destination)
        if s not in self.files:
            raise FileNotFoundError(f"no such file: {s}")
        if d in self.files:
            raise FileExistsError(f"{d} already exists")
        self.files[d] = self.files.pop(s)
        return f"moved {s} to {d}"

    def delete_file(self, path: str) -> str:
        """Delete a file.

        Args:
            path: The file's absolute path.
        """
        p = self._norm(path)
        if p not in self.files:
            raise FileNotFoundError(f"no such file: {p}")
        del self.files[p]
        return f"deleted {p}"

    def _state(self) -> dict[str, Any]:
        return dict(sorted(self.files.items()))


class Calendar(_Base):
    """A calendar of events on whole hours."""

    def __init__(self, events: dict[str, dict[str, Any]],
                 fail_once: list[str] | None = None) -> None:
        super().__init__(fail_once)
        self.events = copy.deepcopy(events)
        self._next = 1 + max((int(e.split("-")[1]) for e in self.events), default=0)

    def _clash(self, date: str, start: int, hours: int, skip: str | None = None) -> str | None:
        for eid, ev in self.events.items():
            if eid != skip and ev["date"] == date and start < ev["start_hour"] + ev[
                    "duration_hours"] and ev["start_hour"] < start + hours:
                return eid
        return None

    @staticmethod
    def _check_slot(date: str, start_hour: int, duration_hours: int) -> None:
        if len(date) != 10 or date[4] != "-" or date[7] != "-":
            raise ValueError(f"date must be YYYY-MM-DD, got {date!r}")
        if not 0 <= start_hour <= 23 or not 1 <= duration_hours <= 24 - start_hour:
            raise ValueError("start_hour must be 0-23 and the event must end by midnight")

    def list_events(self, date: str) -> list[dict[str, Any]]:
        """The events of one day, by start time.

        Args:
            date: The day, as YYYY-MM-DD.
        """
        day = [{"event_id": eid, **ev} for eid, ev in self.events.items() if ev["date"] == date]
        return sorted(day, key=lambda e: (e["start_hour"], e["event_id"]))

    def create_event(self, title: str, date: str, start_hour: int,
                     duration_hours: int = 1) -> dict[str, Any]:
        """Add an event; it may not overlap another.

        Args:
            title: What the event is.
            date: The day, as YYYY-MM-DD.
            start_hour: Start hour, 0-23.
            duration_hours: Length in whole hours.
        """
        self._maybe_fail("create_event")
        self._check_slot(date, start_hour, duration_hours)
        clash = self._clash(date, start_hour, duration_hours)
        if clash is not None:
            raise ValueError(f"the slot overlaps {clash} ({self.events[clash]['title']!r})")
        eid = f"EV-{self._next}"
        self._next += 1
        self.events[eid] = {"title": title, "date": date, "start_hour": start_hour,
                            "duration_hours": duration_hours}
        return {"event_id": eid}

    def move_event(self, event_id: str, date: str, start_hour: int) -> dict[str, Any]:
        """Move an event to another day or hour (same length).

        Args:
            event_id: The event's id, e.g. "EV-3".
            date: The new day, as YYYY-MM-DD.
            start_hour: The new start hour, 0-23.
        """
        if event_id not in self.events:
            raise KeyError(f"unknown event {event_id!r}")
        hours = self.events[event_id]["duration_hours"]
        self._check_slot(date, start_hour, hours)
        clash = self._clash(date, start_hour, hours, skip=event_id)
        if clash is not None:
            raise ValueError(f"the slot overlaps {clash} ({self.events[clash]['title']!r})")
        self.events[event_id].update(date=date, start_hour=start_hour)
        return {"event_id": event_id, **self.events[event_id]}

    def delete_event(self, event_id: str) -> str:
        """Delete an event.

        Args:
            event_id: The event's id.
        """
        if self.events.pop(event_id, None) is None:
            raise KeyError(f"unknown event {event_id!r}")
        return f"deleted {event_id}"

    def _state(self) -> dict[str, Any]:
        # ids are left out: they depend on the order events were created in
        return {"events": sorted([e["title"], e["date"], e["start_hour"], e["duration_hours"]]
                                 for e in self.events.values())}


TOOLSETS: dict[str, type[_Base]] = {"bank": Bank, "shop": Shop, "files": FileSystem,
                                    "calendar": Calendar}
