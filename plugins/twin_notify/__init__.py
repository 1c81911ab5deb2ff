"""twin-server's notifiers: how the owner hears of a lead or an unanswered question.

Registers ``webhook`` (a JSON POST, Slack- and Discord-ready), ``email``
(SMTP) and ``pushover`` (``TWIN_NOTIFY=webhook,email``; the core's own ``log``
is always there). Each module is imported only when its notifier is
selected; settings are read and checked at startup. See ``docs/owner.md``.
"""

from twin_server import hookimpl


@hookimpl
def register_notifiers(register):
    def webhook(context):
        from twin_notify.webhook import WebhookNotifier

        return WebhookNotifier.from_context(context)

    def email(context):
        from twin_notify.mail import EmailNotifier

        return EmailNotifier.from_context(context)

    def pushover(context):
        from twin_notify.pushover import PushoverNotifier

        return PushoverNotifier.from_context(context)

    register("webhook", webhook)
    register("email", email)
    register("pushover", pushover)
