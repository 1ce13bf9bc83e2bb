"""What an errback receives: the failed request, the error, and the response if one came."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from crawler.errors import FetchError

if TYPE_CHECKING:
    from crawler.request import Request
    from crawler.response import Response


class HttpError(FetchError):
    """The response's status is not 2xx and not in the spider's ``handle_httpstatus_list``.

    The response is kept on the error (``error.response``) as Scrapy's ``HttpError`` keeps it.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class Failure:
    """Why a request failed, as Scrapy's errbacks see it (a Twisted ``Failure``).

    >>> failure = Failure(HttpError(response), request)  # doctest: +SKIP
    >>> failure.check(HttpError) is HttpError, failure.response.status  # doctest: +SKIP
    (True, 404)

    ``value`` is the exception, ``type`` its class, ``request`` the request that failed and
    ``response`` the response when there was one (an ``HttpError``, or a page that could not be
    parsed), else None. An errback may yield new requests (a retry: give it ``dont_filter=True``)
    and items, as a callback does.
    """

    __slots__ = ("request", "response", "value")

    def __init__(
        self, value: BaseException, request: Request, response: Response | None = None
    ) -> None:
        self.value = value
        self.request = request
        if response is None and isinstance(value, HttpError):
            response = value.response
        self.response = response

    @property
    def type(self) -> type[BaseException]:
        return type(self.value)

    def check(
        self, *error_types: builtins.type[BaseException]
    ) -> builtins.type[BaseException] | None:
        """The first of ``error_types`` the error is an instance of, or None."""
        for error_type in error_types:
            if isinstance(self.value, error_type):
                return error_type
        return None

    # Twisted's camelCase spellings, which Scrapy users' errbacks call.
    def getErrorMessage(self) -> str:
        return str(self.value) or type(self.value).__name__

    def raiseException(self) -> None:
        raise self.value

    def __repr__(self) -> str:
        status = f" status={self.response.status}" if self.response is not None else ""
        return f"<Failure {type(self.value).__name__}: {self.value} {self.request.url}{status}>"
