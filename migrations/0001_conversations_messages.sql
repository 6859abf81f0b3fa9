-- exai-daemon: conversation archive (daemon-protocol.md, "Storage").
--
-- Run once against the Supabase project's database (SQL editor, `supabase db push`, or
-- `psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f migrations/0001_conversations_messages.sql`).
-- Safe to run again: every statement is idempotent.
--
-- The daemon writes with the service-role key (which bypasses row-level security) through
-- PostgREST upserts keyed on `conversations.continuation_id` and `messages.idempotency_key`,
-- and reads history as "newest N messages of one conversation", which the
-- (conversation_id, created_at desc, id desc) index serves without a sort.

begin;

create table if not exists public.conversations (
    id              uuid        primary key default gen_random_uuid(),
    continuation_id text        not null,
    session_id      text,
    title           text,
    metadata        jsonb       not null default '{}'::jsonb,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint conversations_continuation_id_key unique (continuation_id),
    constraint conversations_continuation_id_length
        check (char_length(continuation_id) between 1 and 128),
    constraint conversations_session_id_length
        check (session_id is null or char_length(session_id) <= 64),
    constraint conversations_title_length
        check (title is null or char_length(title) <= 200),
    constraint conversations_metadata_object
        check (jsonb_typeof(metadata) = 'object')
);

create table if not exists public.messages (
    id              uuid        primary key default gen_random_uuid(),
    conversation_id uuid        not null
        references public.conversations (id) on delete cascade,
    role            text        not null,
    content         text        not null,
    metadata        jsonb       not null default '{}'::jsonb,
    idempotency_key text        not null,
    created_at      timestamptz not null default now(),
    constraint messages_idempotency_key_key unique (idempotency_key),
    constraint messages_role_check
        check (role in ('user', 'assistant', 'system')),
    -- A prompt is at most 100k characters; answers get the same order of magnitude with room.
    constraint messages_content_length
        check (char_length(content) <= 200000),
    constraint messages_idempotency_key_length
        check (char_length(idempotency_key) between 16 and 128),
    constraint messages_metadata_object
        check (jsonb_typeof(metadata) = 'object')
);

-- History: newest N messages of a conversation, then shown oldest first.
create index if not exists messages_conversation_created_idx
    on public.messages (conversation_id, created_at desc, id desc);

-- Listing conversations by recent activity (dashboards, clean-up jobs).
create index if not exists conversations_updated_at_idx
    on public.conversations (updated_at desc);

-- An upsert re-sends the whole row; keep what must not move: the first title, the creation
-- time, and an updated_at that only goes forward (an old write delivered late by the outbox
-- must not make a conversation look older).
create or replace function public.exai_conversations_keep_history()
returns trigger
language plpgsql
as $$
begin
    new.created_at := old.created_at;
    new.title := coalesce(old.title, new.title);
    new.updated_at := greatest(old.updated_at, new.updated_at);
    return new;
end;
$$;

drop trigger if exists conversations_keep_history on public.conversations;
create trigger conversations_keep_history
    before update on public.conversations
    for each row execute function public.exai_conversations_keep_history();

-- Supabase exposes the public schema through its API: with row-level security on and no
-- policy, the anon and authenticated keys see nothing; the daemon's service-role key bypasses
-- RLS. (On a plain PostgreSQL, as in the tests, the owner is not affected.)
alter table public.conversations enable row level security;
alter table public.messages enable row level security;

commit;
