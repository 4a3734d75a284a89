"""Market-data storage: the securities universe and daily bars keyed by (security, date)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Boolean, Date, Float, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from services.common.db import Database
from services.data.history import Bar
from services.data.universe import Security

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class SecurityRow(Base):
    __tablename__ = "securities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    exchange: Mapped[str] = mapped_column(String(8))
    country: Mapped[str] = mapped_column(String(64))
    sector: Mapped[str] = mapped_column(String(100))
    industry: Mapped[str] = mapped_column(String(100))
    lot_size: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    allow_buy: Mapped[bool] = mapped_column(Boolean)
    allow_sell: Mapped[bool] = mapped_column(Boolean)
    kind: Mapped[str] = mapped_column(String(16))

    def to_domain(self) -> Security:
        return Security(self.symbol, self.name, self.currency, self.exchange, self.country, self.sector,
                        self.industry, self.lot_size, self.active, self.allow_buy, self.allow_sell, self.kind)


class DailyBarRow(Base):
    __tablename__ = "daily_bars"
    security_id: Mapped[int] = mapped_column(ForeignKey("securities.id"), primary_key=True)
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    open: Mapped[float | None] = mapped_column(Float, nullable=True)
    high: Mapped[float | None] = mapped_column(Float, nullable=True)
    low: Mapped[float | None] = mapped_column(Float, nullable=True)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float, nullable=True)


def open_database(url: str) -> Database:
    return Database(url, Base.metadata, "data", SCHEMA_VERSION)


def ensure_security(session: Session, security: Security) -> int:
    """The id of `security`, inserting it if unknown. A stored security is left as it is, so a
    provider sync never overwrites what the owner changed."""
    row = session.scalars(select(SecurityRow).where(SecurityRow.symbol == security.symbol)).first()
    if row is None:
        row = SecurityRow(**{f: getattr(security, f) for f in Security.__dataclass_fields__})
        session.add(row)
        session.flush()
    return row.id


def add_missing_bars(session: Session, security_id: int, bars: list[Bar]) -> int:
    """Insert the bars whose date is not stored yet; stored bars are never overwritten here."""
    known = set(session.scalars(select(DailyBarRow.date).where(DailyBarRow.security_id == security_id)))
    new = [
        {"security_id": security_id, "date": bar.date, "open": bar.open, "high": bar.high, "low": bar.low,
         "close": bar.close, "volume": bar.volume}
        for bar in bars if bar.date not in known
    ]
    if new:
        session.execute(DailyBarRow.__table__.insert(), new)
    return len(new)


def list_securities(session: Session, include_inactive: bool, include_indices: bool) -> list[tuple[int, Security]]:
    """(id, security) pairs ordered by symbol."""
    query = select(SecurityRow).order_by(SecurityRow.symbol)
    if not include_inactive:
        query = query.where(SecurityRow.active.is_(True))
    if not include_indices:
        query = query.where(SecurityRow.kind != "INDEX")
    return [(row.id, row.to_domain()) for row in session.scalars(query)]


def find_securities(session: Session, symbols: list[str]) -> dict[str, tuple[int, Security]]:
    rows = session.scalars(select(SecurityRow).where(SecurityRow.symbol.in_(symbols)))
    return {row.symbol: (row.id, row.to_domain()) for row in rows}


def daily_bars(session: Session, security_id: int, start: date | None, end: date) -> list[Bar]:
    query = select(DailyBarRow).where(DailyBarRow.security_id == security_id, DailyBarRow.date <= end)
    if start is not None:
        query = query.where(DailyBarRow.date >= start)
    return [Bar(r.date, r.close, r.open, r.high, r.low, r.volume)
            for r in session.scalars(query.order_by(DailyBarRow.date))]


def latest_bar(session: Session, security_id: int, until: date) -> Bar | None:
    row = session.scalars(
        select(DailyBarRow)
        .where(DailyBarRow.security_id == security_id, DailyBarRow.date <= until)
        .order_by(DailyBarRow.date.desc())
        .limit(1)
    ).first()
    return None if row is None else Bar(row.date, row.close, row.open, row.high, row.low, row.volume)


def stored_extent(session: Session) -> dict[int, tuple[int, date]]:
    """security id -> (number of bars, last bar date), in one grouped query."""
    rows = session.execute(
        select(DailyBarRow.security_id, func.count(), func.max(DailyBarRow.date)).group_by(DailyBarRow.security_id)
    )
    return {security_id: (count, last) for security_id, count, last in rows}
