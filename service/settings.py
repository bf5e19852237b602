"""Every environment variable the service reads, typed, with its default."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="NEON_DATABASE_URL")
    direct_database_url: str | None = Field(default=None, alias="NEON_DATABASE_DIRECT_URL")
    data_dir: Path = Field(default=Path(".todo-service"), alias="TODO_DATA_DIR")

    pool_size: int = Field(default=8, ge=1, alias="TODO_DB_POOL_SIZE")
    max_overflow: int = Field(default=0, ge=0, alias="TODO_DB_MAX_OVERFLOW")
    pool_timeout: float = Field(default=5.0, gt=0, alias="TODO_DB_POOL_TIMEOUT")
    pool_recycle: int = Field(default=300, gt=0, alias="TODO_DB_POOL_RECYCLE")
    connect_timeout: int = Field(default=3, ge=1, alias="TODO_DB_CONNECT_TIMEOUT")
    statement_timeout_ms: int = Field(default=5000, ge=1, alias="TODO_DB_STATEMENT_TIMEOUT_MS")
    retry_after_seconds: int = Field(default=2, ge=1, alias="TODO_RETRY_AFTER_SECONDS")

    log_level: str = Field(default="INFO", alias="TODO_LOG_LEVEL")


@lru_cache
def get_settings() -> Settings:
    return Settings()
