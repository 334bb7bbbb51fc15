"""Every line the bots say, in English and Chinese, shared by the Telegram and Discord adapters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import RetouchError
from core.quota import QuotaStatus
from core.store import Stats

Lang = Literal["en", "zh"]

_EN: dict[str, str] = {
    "start": (
        "Hi! Send me a portrait photo and I'll retouch it.\n"
        "Add a caption like `fidelity 0.3` to choose the strength "
        "(lower is stronger, 0 to 1). /help shows more."
    ),
    "help": (
        "Send a portrait photo (or an image as a file) and I'll send it back retouched.\n\n"
        "Strength: add a caption with a fidelity from 0 to 1 — lower retouches more, "
        "1 keeps the photo nearly as it is. 0.1 is a clear retouch (the default), "
        "0.3 a moderate one, 0.5 and 0.7 a light touch.\n"
        "Examples: `fidelity 0.3`, `f=0.5`, `0.3`, `30%`, `保真度 0.3`.\n\n"
        "In groups, caption the photo with /retouch or mention me, or reply to a photo with "
        "`/retouch 0.3`.\n\n"
        "/quota — your photos left today\n"
        "/fidelity 0.3 — save your default strength (/fidelity alone shows it)\n"
        "/forget — delete what I keep about you"
    ),
    "received": "Got it, preparing your photo…",
    "queued": "Queued, #{position} in line…",
    "running": "Retouching…",
    "delivering": "Uploading the result…",
    "done_caption": "Retouched · fidelity {fidelity:g}{left}",
    "left_today": " · {left} left today",
    "cancelled": "Cancelled. Nothing was charged.",
    "failed": "Sorry, I couldn't retouch that photo: {reason} Nothing was charged.",
    "send_a_photo": (
        "Please send a photo (or an image as a file) — I can only retouch still images."
    ),
    "not_an_image_file": (
        "That file isn't an image I can retouch. Please send a JPEG, PNG, WebP or HEIC photo."
    ),
    "file_too_big": "That file is too large ({size} MB); please send one under {limit} MB.",
    "reply_to_photo": "Reply to a message with a photo and write /retouch (optionally 0.3).",
    "fidelity_saved": "Saved: your photos will use fidelity {fidelity:g} unless you say otherwise.",
    "fidelity_cleared": "Cleared: your photos will use the default fidelity {fidelity:g}.",
    "fidelity_show": "Your default fidelity is {fidelity:g}{source}. Change it with /fidelity 0.3",
    "fidelity_source_default": " (the bot's default)",
    "quota": "Today you've used {used} of {limit}; {left} left{credits}. Resets {reset}.",
    "quota_unlimited": "You have no daily limit. Used today: {used}.",
    "quota_credits": " (plus {credits} extra credits)",
    "forget_confirm": (
        "Delete your saved settings and job history? Photos in progress are cancelled. "
        "(Today's usage count stays.)"
    ),
    "forget_yes": "Yes, delete",
    "forget_no": "Keep",
    "forget_done": "Done: I deleted your settings and history ({jobs} jobs).",
    "forget_kept": "Nothing was deleted.",
    "admin_only": "That command is for the bot's admins.",
    "stats": (
        "Today ({day}): {jobs} jobs from {users} users.\nBy state: {states}\n"
        "By platform: {platforms}\nQueue: {queued} waiting, {running} running."
    ),
    "grant_usage": "Usage: /grant <user> <n> — e.g. /grant 123456 5 or /grant discord:42 5",
    "grant_done": "{user} now has {credits} extra credits.",
    "redo": "Redo {fidelity:g}",
    "cancel": "Cancel",
    "not_yours": "Only the person who sent the photo can use these buttons.",
    "anonymous_sender": (
        "You are posting as the group (or a channel), so I can't tell who you are: quotas and "
        "buttons belong to people. Turn off “Remain anonymous” in your admin rights, or send "
        "the photo to me in a private chat."
    ),
    "job_gone": "That photo is no longer available — please send it again.",
    "too_late": "Too late to cancel: it's already done or being delivered.",
    "cancel_ok": "Cancelled.",
    "redo_ok": "Retouching again with fidelity {fidelity:g}…",
    "redo_not_offered": "Redo takes fidelity {choices} only. Nothing was charged.",
    "no_attach_permission": (
        "I can't post images in this channel (I need the Attach Files permission). "
        "Ask a moderator to grant it, or use me in a direct message."
    ),
    # Discord only.
    "d:help": (
        "Use /retouch with a portrait photo and I'll post it back retouched. The optional "
        "`fidelity` runs from 0 to 1: lower retouches more, 1 keeps the photo nearly as it is; "
        "0.1 is a clear retouch (the default), 0.3 a moderate one, 0.5 and 0.7 a light touch.\n"
        "On a message with photos: Apps → Retouch photo.\n\n"
        "/quota — your photos left today\n"
        "/fidelity 0.3 — save your default strength (/fidelity alone shows it)\n"
        "/forget — delete what I keep about you"
    ),
    "d:result_title": "Retouched",
    "d:fidelity": "Fidelity",
    "d:time": "Time",
    "d:seconds": "{seconds:.1f} s",
    "d:left": "Left today",
    "d:unlimited": "no limit",
    "d:late": (
        "{mention} here is your retouched photo (the command had expired, so I posted it here)."
    ),
    "d:no_images": "That message has no images I can retouch.",
    # Reasons, by error code; shown after "couldn't retouch that photo:" or on their own.
    "e:bad_fidelity": "the fidelity must be a number between 0 and 1, like 0.3 or 30%.",
    "e:not_an_image": "that file isn't an image I can read (JPEG, PNG, WebP or HEIC).",
    "e:animated_image": "animated images can't be retouched; please send a still photo.",
    "e:image_too_large": "the image is too large.",
    "e:no_face": "I couldn't find a face. A clear, front-facing portrait works best.",
    "e:forbidden_url": "I can't fetch images from that address.",
    "e:input_gone": "the photo is no longer available on the server; please send it again.",
    "e:upstream_auth": "the retouch service isn't configured correctly (the operator is told).",
    "e:upstream_rate_limited": "the retouch service is busy right now; please try again shortly.",
    "e:upstream_unavailable": "the retouch service is unavailable right now; please try again.",
    "e:upstream_timeout": "the retouch service took too long; please try again.",
    "e:result_expired": "the result expired before I could fetch it; please try again.",
    "e:delivery_failed": "I couldn't upload the result here.",
    "e:busy": "I'm very busy right now; please try again in a minute.",
    "e:other": "something went wrong on my side.",
    # Rejections before a job exists (nothing was charged).
    "r:quota_exceeded": ("You've used all {limit} photos for today. Your quota resets {reset}."),
    "r:chat_quota_exceeded": (
        "This chat has used all {limit} photos for today. It resets {reset}."
    ),
    "r:too_many_in_flight": "You already have {limit} photos in progress; wait for them first.",
    "r:rate_limited": "That's a lot of photos at once — please wait {retry_after} s.",
    "r:access_denied": "This bot is private. Ask its operator for access.",
    "r:shutting_down": "I'm restarting; please send the photo again in a minute.",
}

_ZH: dict[str, str] = {
    "start": (
        "你好!发送一张人像照片,我会为你美颜。\n"
        "可以加上说明,例如 `保真度 0.3` 来选择强度(0 到 1,越小越强)。/help 查看更多。"
    ),
    "help": (
        "发送一张人像照片(或以文件形式发送图片),我会把美颜后的照片发回给你。\n\n"
        "强度:在说明中写 0 到 1 的保真度——越小美颜越强,1 几乎保持原样。"
        "0.1 为明显美颜(默认),0.3 适中,0.5 和 0.7 为轻微修饰。\n"
        "示例:`保真度 0.3`、`fidelity 0.3`、`f=0.5`、`0.3`、`30%`。\n\n"
        "在群组中,请在照片说明里写 /retouch 或 @我,或回复一张照片并发送 `/retouch 0.3`。\n\n"
        "/quota — 今天剩余次数\n"
        "/fidelity 0.3 — 保存默认强度(只发 /fidelity 查看)\n"
        "/forget — 删除我保存的关于你的数据"
    ),
    "received": "收到,正在准备你的照片…",
    "queued": "排队中,第 {position} 位…",
    "running": "正在美颜…",
    "delivering": "正在上传结果…",
    "done_caption": "美颜完成 · 保真度 {fidelity:g}{left}",
    "left_today": " · 今天还剩 {left} 次",
    "cancelled": "已取消,未扣除次数。",
    "failed": "抱歉,这张照片没能完成美颜:{reason} 未扣除次数。",
    "send_a_photo": "请发送一张照片(或以文件形式发送图片)——我只能处理静态图片。",
    "not_an_image_file": "这个文件不是我能处理的图片。请发送 JPEG、PNG、WebP 或 HEIC 照片。",
    "file_too_big": "文件太大({size} MB),请发送小于 {limit} MB 的文件。",
    "reply_to_photo": "请回复一条带照片的消息并发送 /retouch(可加 0.3)。",
    "fidelity_saved": "已保存:之后的照片默认使用保真度 {fidelity:g}。",
    "fidelity_cleared": "已清除:之后的照片使用默认保真度 {fidelity:g}。",
    "fidelity_show": "你的默认保真度是 {fidelity:g}{source}。用 /fidelity 0.3 修改。",
    "fidelity_source_default": "(机器人默认值)",
    "quota": "今天已用 {used}/{limit} 次,剩余 {left} 次{credits}。{reset}重置。",
    "quota_unlimited": "你没有每日限制。今天已用:{used} 次。",
    "quota_credits": "(另有 {credits} 次额外额度)",
    "forget_confirm": "删除你保存的设置和任务记录?进行中的照片会被取消。(今天的使用次数会保留。)",
    "forget_yes": "确认删除",
    "forget_no": "保留",
    "forget_done": "已删除你的设置和记录({jobs} 个任务)。",
    "forget_kept": "没有删除任何内容。",
    "admin_only": "该命令仅限管理员使用。",
    "stats": (
        "今天({day}):{users} 位用户,{jobs} 个任务。\n按状态:{states}\n"
        "按平台:{platforms}\n队列:{queued} 个等待,{running} 个进行中。"
    ),
    "grant_usage": "用法:/grant <用户> <次数>,例如 /grant 123456 5 或 /grant discord:42 5",
    "grant_done": "{user} 现在有 {credits} 次额外额度。",
    "redo": "重做 {fidelity:g}",
    "cancel": "取消",
    "not_yours": "只有发送照片的人可以使用这些按钮。",
    "anonymous_sender": (
        "你正在以群组(或频道)的身份发言,我无法知道你是谁:次数和按钮都属于个人。"
        "请在管理员权限中关闭“匿名”,或在私聊中把照片发给我。"
    ),
    "job_gone": "这张照片已不可用——请重新发送。",
    "too_late": "无法取消:已经完成或正在发送。",
    "cancel_ok": "已取消。",
    "redo_ok": "正在以保真度 {fidelity:g} 重新美颜…",
    "redo_not_offered": "重做只能选择保真度 {choices}。未扣除次数。",
    "no_attach_permission": (
        "我无法在这个频道发送图片(需要“附加文件”权限)。请让管理员授权,或私信我使用。"
    ),
    "d:help": (
        "使用 /retouch 并附上一张人像照片,我会发回美颜后的照片。可选的 `fidelity`(保真度)"
        "取 0 到 1:越小美颜越强,1 几乎保持原样;"
        "0.1 为明显美颜(默认),0.3 适中,0.5 和 0.7 为轻微修饰。\n"
        "对带照片的消息:应用 → Retouch photo。\n\n"
        "/quota — 今天剩余次数\n"
        "/fidelity 0.3 — 保存默认强度(只发 /fidelity 查看)\n"
        "/forget — 删除我保存的关于你的数据"
    ),
    "d:result_title": "美颜完成",
    "d:fidelity": "保真度",
    "d:time": "用时",
    "d:seconds": "{seconds:.1f} 秒",
    "d:left": "今天剩余",
    "d:unlimited": "不限",
    "d:late": "{mention} 这是你的美颜照片(命令已过期,所以发在这里)。",
    "d:no_images": "这条消息里没有我能美颜的图片。",
    "e:bad_fidelity": "保真度必须是 0 到 1 之间的数字,例如 0.3 或 30%。",
    "e:not_an_image": "这个文件不是我能读取的图片(JPEG、PNG、WebP 或 HEIC)。",
    "e:animated_image": "不能处理动图,请发送静态照片。",
    "e:image_too_large": "图片太大了。",
    "e:no_face": "没有检测到人脸。清晰的正面人像效果最好。",
    "e:forbidden_url": "我不能从这个地址获取图片。",
    "e:input_gone": "服务器上已找不到这张照片,请重新发送。",
    "e:upstream_auth": "美颜服务配置有误(已通知运营者)。",
    "e:upstream_rate_limited": "美颜服务现在很忙,请稍后再试。",
    "e:upstream_unavailable": "美颜服务暂时不可用,请稍后再试。",
    "e:upstream_timeout": "美颜服务超时,请再试一次。",
    "e:result_expired": "结果在获取前已过期,请再试一次。",
    "e:delivery_failed": "我无法在这里上传结果。",
    "e:busy": "我现在很忙,请一分钟后再试。",
    "e:other": "我这边出了点问题。",
    "r:quota_exceeded": "你今天的 {limit} 次已用完,{reset}重置。",
    "r:chat_quota_exceeded": "本群今天的 {limit} 次已用完,{reset}重置。",
    "r:too_many_in_flight": "你已有 {limit} 张照片在处理中,请先等待完成。",
    "r:rate_limited": "发送太频繁了——请等待 {retry_after} 秒。",
    "r:access_denied": "这是私有机器人,请联系运营者开通。",
    "r:shutting_down": "我正在重启,请一分钟后重新发送照片。",
}

CATALOG: dict[Lang, dict[str, str]] = {"en": _EN, "zh": _ZH}


def lang_for(code: str | None) -> Lang:
    """The catalog for a platform language code (`zh-hans`, `zh-CN`, `en-US` ...)."""
    return "zh" if code and code.lower().startswith("zh") else "en"


def text(key: str, lang: Lang = "en", **params: Any) -> str:
    """One line from the catalog, formatted; English when the language lacks it."""
    template = CATALOG[lang].get(key) or _EN[key]
    return template.format(**params)


def when(ts: float, lang: Lang) -> str:
    """A reset time people can read: "at 00:00 UTC" / "于 UTC 00:00"."""
    moment = datetime.fromtimestamp(ts, UTC)
    return f"于 UTC {moment:%H:%M} " if lang == "zh" else f"at {moment:%H:%M} UTC"


def reason(error: RetouchError, lang: Lang) -> str:
    """Why a job failed, in the user's words."""
    key = f"e:{error.code}"
    if key in _EN:
        return text(key, lang)
    if error.code.startswith("upstream") or error.code.startswith("result"):
        return text("e:upstream_unavailable", lang)
    return text("e:other", lang)


def failure(error: RetouchError, lang: Lang) -> str:
    """The whole line for a failed job."""
    return text("failed", lang, reason=reason(error, lang))


def rejection(error: RetouchError, lang: Lang) -> str:
    """The line for a request turned away before it became a job (nothing charged)."""
    key = f"r:{error.code}"
    if key in _EN:
        params = dict(error.params)
        if "resets_at" in params:
            params["reset"] = when(float(params["resets_at"]), lang)
        params.setdefault("reset", "")
        params.setdefault("limit", "")
        params.setdefault("retry_after", "")
        return text(key, lang, **params)
    if error.user_fault:
        return reason(error, lang)[:1].upper() + reason(error, lang)[1:]
    return failure(error, lang)


def quota_line(status: QuotaStatus, lang: Lang) -> str:
    """The `/quota` answer."""
    if status.limit is None:
        return text("quota_unlimited", lang, used=status.used)
    credits = text("quota_credits", lang, credits=status.credits) if status.credits else ""
    return text(
        "quota",
        lang,
        used=status.used,
        limit=status.limit,
        left=status.left,
        credits=credits,
        reset=when(status.resets_at, lang),
    )


def stats_line(stats: Stats, queued: int, running: int, lang: Lang) -> str:
    """The `/stats` answer for admins."""
    return text(
        "stats",
        lang,
        day=stats.day,
        jobs=stats.jobs,
        users=stats.users,
        states=_counts(stats.by_state),
        platforms=_counts(stats.by_platform),
        queued=queued,
        running=running,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
