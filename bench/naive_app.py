"""The baseline: the tutorial-style FastAPI + SQLModel service a careful newcomer writes.

A sync ORM Session per request, ORM objects loaded and turned into pydantic response
models, commit then refresh (a read after every write). Kept deliberately plain; it
answers the same routes and shapes as the service so the same load drives both.
"""

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from sqlmodel import Field, Session, SQLModel, create_engine, select

engine = create_engine(
    os.environ["NAIVE_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1)
)


class Todo(SQLModel, table=True):
    __tablename__ = "todos"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID
    title: str
    description: str | None = None
    is_completed: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: uuid.UUID = Field(primary_key=True)


class TodoCreate(SQLModel):
    title: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)


class TodoUpdate(SQLModel):
    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=2000)
    is_completed: bool | None = None


class TodoPublic(SQLModel):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    is_completed: bool
    created_at: datetime
    updated_at: datetime


class TodoList(SQLModel):
    items: list[TodoPublic]
    count: int


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
UserDep = Annotated[uuid.UUID, Header(alias="X-User-ID")]

app = FastAPI()


def _owned(session: Session, user: uuid.UUID, todo_id: uuid.UUID) -> Todo:
    todo = session.get(Todo, todo_id)
    if todo is None or todo.user_id != user:
        raise HTTPException(status_code=404, detail="Not found")
    return todo


@app.post("/api/v1/todos", status_code=201, response_model=TodoPublic)
def create_todo(body: TodoCreate, session: SessionDep, x_user_id: UserDep) -> Todo:
    if session.get(User, x_user_id) is None:
        session.add(User(id=x_user_id))
    todo = Todo(user_id=x_user_id, title=body.title, description=body.description)
    session.add(todo)
    session.commit()
    session.refresh(todo)
    return todo


@app.get("/api/v1/todos", response_model=TodoList)
def list_todos(session: SessionDep, x_user_id: UserDep) -> TodoList:
    statement = (
        select(Todo).where(Todo.user_id == x_user_id).order_by(Todo.created_at.desc())  # type: ignore[attr-defined]
    )
    todos = session.exec(statement).all()
    items = [TodoPublic.model_validate(todo) for todo in todos]
    return TodoList(items=items, count=len(items))


@app.get("/api/v1/todos/{todo_id}", response_model=TodoPublic)
def get_todo(todo_id: uuid.UUID, session: SessionDep, x_user_id: UserDep) -> Todo:
    return _owned(session, x_user_id, todo_id)


@app.patch("/api/v1/todos/{todo_id}", response_model=TodoPublic)
def update_todo(
    todo_id: uuid.UUID, body: TodoUpdate, session: SessionDep, x_user_id: UserDep
) -> Todo:
    todo = _owned(session, x_user_id, todo_id)
    for key, value in body.model_dump(exclude_unset=True).items():
        setattr(todo, key, value)
    todo.updated_at = datetime.now(UTC)
    session.add(todo)
    session.commit()
    session.refresh(todo)
    return todo


@app.delete("/api/v1/todos/{todo_id}", status_code=204)
def delete_todo(todo_id: uuid.UUID, session: SessionDep, x_user_id: UserDep) -> Response:
    session.delete(_owned(session, x_user_id, todo_id))
    session.commit()
    return Response(status_code=204)
