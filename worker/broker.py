"""Whether the Redis broker answers: a module of its own, so that status checks (stalls, health)
need not import the queue and what it imports."""

import redis


def broker_reachable(broker_url: str, timeout: float = 2.0) -> bool:
    """Whether the Redis broker answers a ping within `timeout` seconds."""
    client = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
