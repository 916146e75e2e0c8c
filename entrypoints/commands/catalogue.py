"""``wxpay product add`` and ``wxpay product list``: the shop's catalogue."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from adapters.sqlalchemy_store import SqlAlchemyUnitOfWork
from domain.model import InvalidProduct
from domain.model import Product
from domain.money import Fen
from domain.money import InvalidAmount
from entrypoints.commands.database import with_store


def register(subparsers: Any) -> None:
    product = subparsers.add_parser(
        "product",
        help="add, change or list the products on sale",
        description="Edit the catalogue in $WXPAY_DATABASE_URL.",
    )
    actions = product.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    add = actions.add_parser(
        "add",
        help="add a product, or change the one with this id",
    )
    add.add_argument("id", metavar="ID", help="1-32 letters, digits, '_' or '-'")
    add.add_argument("name", metavar="NAME", help="what the payer reads")
    add.add_argument(
        "price",
        metavar="PRICE_FEN",
        help="the price in fen, a positive integer (100 = 1.00 yuan)",
    )
    add.add_argument(
        "--unavailable",
        action="store_true",
        help="list it, but refuse to sell it (sold out)",
    )
    add.set_defaults(func=run_add)

    listing = actions.add_parser("list", help="print the catalogue")
    listing.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    try:
        price = Fen.parse(args.price)
        product = Product(
            id=args.id,
            name=args.name,
            price=price,
            available=not args.unavailable,
        )
    except InvalidAmount:
        print(
            f"wxpay: PRICE_FEN must be a positive integer number of fen,"
            f" like 100 for 1.00 yuan; got {args.price!r}",
            file=sys.stderr,
        )
        return 2
    except InvalidProduct as error:
        print(f"wxpay: {error}", file=sys.stderr)
        return 2

    def save(uow: SqlAlchemyUnitOfWork) -> None:
        with uow:
            uow.products.save(product)
            uow.commit()

    status = with_store(save)
    if status == 0:
        state = "available" if product.available else "unavailable"
        print(f"{product.id} {product.price} fen {state}: {product.name}")
    return status


def run_list(args: argparse.Namespace) -> int:
    found: list[Product] = []

    def read(uow: SqlAlchemyUnitOfWork) -> None:
        with uow:
            found.extend(uow.products.list())

    status = with_store(read)
    if status != 0:
        return status
    if not found:
        print("wxpay: the catalogue is empty", file=sys.stderr)
    for product in found:
        state = "available" if product.available else "unavailable"
        print(f"{product.id}\t{product.price}\t{state}\t{product.name}")
    return 0
