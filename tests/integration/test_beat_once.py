"""Two beats sharing one Redis fire each schedule entry once per period (alfred/beat_once.py)."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule

from alfred.beat_once import KEY_PREFIX, OnceScheduler, hold_ms


def _app(redis_url: str) -> Celery:
    app = Celery("beat-once-test", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = redis_url
    app.conf.alfred_redis_url_secret = redis_url
    return app


def _entry(app: Celery, name: str, every) -> ScheduleEntry:
    return ScheduleEntry(name=name, task="alfred.sweep_journals", schedule=every, app=app)


def test_two_beats_coming_due_together_publish_once(redis_url, redis_client, tmp_path):
    app = _app(redis_url)
    beats = [OnceScheduler(app=app, schedule_filename=str(tmp_path / f"beat-{n}")) for n in (1, 2)]
    entry = _entry(app, "sweep-journals", schedule(timedelta(seconds=10)))
    for beat in beats:
        beat.apply_entry(entry, producer=beat.producer)
    assert redis_client.llen("alfred") == 1
    # The key lasts 90 % of the period: the beat that fired fires again next period.
    assert 5_000 < redis_client.pttl(KEY_PREFIX + "sweep-journals") <= 9_000
    redis_client.delete(KEY_PREFIX + "sweep-journals")
    beats[1].apply_entry(entry, producer=beats[1].producer)
    assert redis_client.llen("alfred") == 2
    for beat in beats:
        beat.close()


def test_a_weekly_job_is_held_for_most_of_the_week(redis_url):
    app = _app(redis_url)
    weekly = _entry(app, "rotate-tokens", crontab(minute=0, hour=3, day_of_week=1))
    daily = _entry(app, "pii-lifecycle", crontab(minute=30, hour=2))
    assert 0 < hold_ms(weekly) <= 0.9 * 7 * 24 * 3600 * 1000
    assert 0 < hold_ms(daily) <= 0.9 * 24 * 3600 * 1000
    # However close the next run, a firing always holds the key for a while.
    assert hold_ms(_entry(app, "tiny", schedule(timedelta(microseconds=1)))) >= 1
