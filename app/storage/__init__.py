"""Where conversations live: threads in Redis or memory, archived to Supabase."""
