"""The demo's models: users borrow books (book_history) and write posts about them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import declarative_base, relationship

Base = declarative_base()


class User(Base):  # type: ignore[valid-type,misc]
    __tablename__ = "users"
    id = Column(Integer, primary_key=True)
    name = Column(String(80), nullable=False)
    email = Column(String(120), nullable=False, unique=True)
    history = relationship("BookHistory", back_populates="user")
    posts = relationship("Post", back_populates="author")


class Book(Base):  # type: ignore[valid-type,misc]
    __tablename__ = "books"
    id = Column(Integer, primary_key=True)
    title = Column(String(200), nullable=False)
    author = Column(String(120), nullable=False)
    copies_available = Column(Integer, nullable=False, default=1)
    history = relationship("BookHistory", back_populates="book")


class BookHistory(Base):  # type: ignore[valid-type,misc]
    __tablename__ = "book_history"
    __table_args__ = (UniqueConstraint("book_id", "user_id", "checked_out"),)
    id = Column(Integer, primary_key=True)
    book_id = Column(Integer, ForeignKey("books.id"), nullable=False)
    user_id = Column(Integer, ForeignKey("users.id"), nullable=False)
    checked_out = Column(Date, nullable=False, default=dt.date.today)
    returned = Column(Date)
    book = relationship(Book, back_populates="history")
    user = relationship(User, back_populates="history")


class Post(Base):  # type: ignore[valid-type,misc]
    __tablename__ = "posts"
    id = Column(Integer, primary_key=True)
    author_id = Column(Integer, ForeignKey("users.id"), nullable=False)
    book_id = Column(Integer, ForeignKey("books.id"))
    body = Column(Text, nullable=False)
    author = relationship(User, back_populates="posts")
