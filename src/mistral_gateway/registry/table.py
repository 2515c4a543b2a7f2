"""The 55 operations of the seed, one row each. Adding an operation: one row here plus a handler.

Names are the seed's, method and path Mistral's (see shared/spec/mistral-api-digest.md, operation index).
Parameters and spec schemas are not repeated here: they are derived from ``mistral_spec.json`` at load time.
"""

from __future__ import annotations

from typing import Any

from mistral_gateway.protocol import audio, batch, chat, classifiers, conversations, embeddings, files, models, ocr
from mistral_gateway.registry.operation import Operation

__all__ = ["CATEGORY_SCOPES", "OPERATIONS"]

# Token scopes are per category; ``*`` grants all of them.
CATEGORY_SCOPES: dict[str, str] = {
    "Chat": "chat",
    "Embeddings": "embeddings",
    "Files": "files",
    "Fine Tuning": "fine_tuning",
    "Models": "models",
    "Batch": "batch",
    "Agents": "agents",
    "Moderation": "moderation",
    "Classification": "classification",
    "OCR": "ocr",
    "Audio": "audio",
    "Conversations": "conversations",
    "Libraries": "libraries",
}


def _op(id: str, name: str, category: str, method: str, path: str, operation_id: str, **kw: Any) -> Operation:
    kw.setdefault("response_kind", "empty" if kw.get("status") == 204 else "json")
    return Operation(
        id=id,
        name=name,
        category=category,
        method=method,
        path=path,
        operation_id=operation_id,
        scope=CATEGORY_SCOPES[category],
        **kw,
    )


OPERATIONS: tuple[Operation, ...] = (
    # Chat
    _op("create_fim_completions", "Create FIM Completions", "Chat", "POST", "/v1/fim/completions",
        "fim_completion_v1_fim_completions_post", body="json", stream="optional", implemented=True,
        request=chat.FIMCompletionRequest, response=chat.ChatCompletionResponse, chunk=chat.CompletionChunk,
        client="fim.complete", upstream="fim", openai_path="/v1/completions", batchable=True),
    _op("create_chat_completions", "Create Chat Completions", "Chat", "POST", "/v1/chat/completions",
        "chat_completion_v1_chat_completions_post", body="json", stream="optional",
        implemented=True, request=chat.ChatCompletionRequest, response=chat.ChatCompletionResponse,
        chunk=chat.CompletionChunk, client="chat.complete", upstream="chat", openai_path="/v1/chat/completions",
        batchable=True),
    # Embeddings
    _op("create_embeddings", "Create Embeddings", "Embeddings", "POST", "/v1/embeddings",
        "embeddings_v1_embeddings_post", body="json", implemented=True,
        request=embeddings.EmbeddingRequest, response=embeddings.EmbeddingResponse, upstream="embeddings",
        openai_path="/v1/embeddings", batchable=True),
    # Files
    _op("list_files", "List Files", "Files", "GET", "/v1/files", "files_api_routes_list_files",
        implemented=True, query=files.ListFilesQuery, response=files.ListFilesOut),
    _op("upload_file", "Upload File", "Files", "POST", "/v1/files", "files_api_routes_upload_file",
        body="multipart", implemented=True, response=files.UploadFileOut),
    _op("retrieve_file", "Retrieve File", "Files", "GET", "/v1/files/{file_id}", "files_api_routes_retrieve_file",
        implemented=True, response=files.RetrieveFileOut),
    _op("delete_file", "Delete File", "Files", "DELETE", "/v1/files/{file_id}", "files_api_routes_delete_file",
        implemented=True, response=files.DeleteFileOut),
    _op("download_file", "Download File", "Files", "GET", "/v1/files/{file_id}/content",
        "files_api_routes_download_file", implemented=True, response_kind="binary"),
    _op("get_signed_url", "Get Signed Url", "Files", "GET", "/v1/files/{file_id}/url",
        "files_api_routes_get_signed_url", implemented=True, query=files.SignedUrlQuery,
        response=files.FileSignedURL),
    # Fine tuning
    _op("list_fine_tuning_jobs", "List Fine Tuning Jobs", "Fine Tuning", "GET", "/v1/fine_tuning/jobs",
        "jobs_api_routes_fine_tuning_get_fine_tuning_jobs", deprecated=True),
    _op("cancel_fine_tuning_job", "Cancel Fine Tuning Job", "Fine Tuning", "POST",
        "/v1/fine_tuning/jobs/{job_id}/cancel", "jobs_api_routes_fine_tuning_cancel_fine_tuning_job",
        deprecated=True),
    _op("start_fine_tuning_job", "Start Fine Tuning Job", "Fine Tuning", "POST",
        "/v1/fine_tuning/jobs/{job_id}/start", "jobs_api_routes_fine_tuning_start_fine_tuning_job",
        deprecated=True),
    _op("get_fine_tuning_job", "Get Fine Tuning Job", "Fine Tuning", "GET", "/v1/fine_tuning/jobs/{job_id}",
        "jobs_api_routes_fine_tuning_get_fine_tuning_job", deprecated=True),
    _op("update_fine_tuned_model", "Update Fine Tuned Model", "Fine Tuning", "PATCH",
        "/v1/fine_tuning/models/{model_id}", "jobs_api_routes_fine_tuning_update_fine_tuned_model", body="json",
        client="fine_tuning.update_model"),
    _op("archive_fine_tuned_model", "Archive Fine Tuned Model", "Fine Tuning", "POST",
        "/v1/fine_tuning/models/{model_id}/archive", "jobs_api_routes_fine_tuning_archive_fine_tuned_model",
        client="fine_tuning.archive_model"),
    _op("unarchive_fine_tuned_model", "Unarchive Fine Tuned Model", "Fine Tuning", "DELETE",
        "/v1/fine_tuning/models/{model_id}/archive", "jobs_api_routes_fine_tuning_unarchive_fine_tuned_model",
        client="fine_tuning.unarchive_model"),
    # Models
    _op("list_available_models", "List Available Models", "Models", "GET", "/v1/models",
        "list_models_v1_models_get", implemented=True, query=models.ListModelsQuery,
        response=models.ModelList, client="models.list"),
    _op("retrieve_model", "Retrieve Model", "Models", "GET", "/v1/models/{model_id}",
        "retrieve_model_v1_models__model_id__get", implemented=True, response=models.ModelCard),
    _op("delete_model", "Delete Model", "Models", "DELETE", "/v1/models/{model_id}",
        "delete_model_v1_models__model_id__delete", implemented=True, response=models.DeleteModelOut),
    # Fine tuning (continued, in the seed's order)
    _op("create_fine_tuning_job", "Create Fine Tuning Job", "Fine Tuning", "POST", "/v1/fine_tuning/jobs",
        "jobs_api_routes_fine_tuning_create_fine_tuning_job", body="json", deprecated=True),
    # Batch
    _op("create_batch_job", "Create Batch Job", "Batch", "POST", "/v1/batch/jobs",
        "jobs_api_routes_batch_create_batch_job", body="json", implemented=True,
        request=batch.BatchJobIn, response=batch.BatchJobOut),
    _op("get_batch_job", "Get Batch Job", "Batch", "GET", "/v1/batch/jobs/{job_id}",
        "jobs_api_routes_batch_get_batch_job", implemented=True, query=batch.GetBatchJobQuery,
        response=batch.BatchJobOut),
    _op("get_batch_jobs", "Get Batch Jobs", "Batch", "GET", "/v1/batch/jobs", "jobs_api_routes_batch_get_batch_jobs",
        client="batch.list_jobs", implemented=True, query=batch.ListBatchJobsQuery, response=batch.BatchJobsOut),
    _op("cancel_batch_job", "Cancel Batch Job", "Batch", "POST", "/v1/batch/jobs/{job_id}/cancel",
        "jobs_api_routes_batch_cancel_batch_job", implemented=True, response=batch.BatchJobOut),
    # Agents
    _op("create_agent", "Create Agent", "Agents", "POST", "/v1/agents", "agents_api_v1_agents_create", body="json"),
    _op("list_agents", "List Agents", "Agents", "GET", "/v1/agents", "agents_api_v1_agents_list", deprecated=True),
    _op("get_agent", "Get Agent", "Agents", "GET", "/v1/agents/{agent_id}", "agents_api_v1_agents_get"),
    _op("update_agent", "Update Agent", "Agents", "PATCH", "/v1/agents/{agent_id}", "agents_api_v1_agents_update",
        body="json"),
    _op("delete_agent", "Delete Agent", "Agents", "DELETE", "/v1/agents/{agent_id}", "agents_api_v1_agents_delete",
        status=204),
    _op("update_agent_version", "Update Agent Version", "Agents", "PATCH", "/v1/agents/{agent_id}/version",
        "agents_api_v1_agents_update_version"),
    _op("create_agent_completion", "Create Agent Completion", "Agents", "POST", "/v1/agents/completions",
        "agents_completion_v1_agents_completions_post", body="json", stream="optional", deprecated=True,
        client="agents.complete"),
    # Moderation and classification
    _op("moderations", "Moderations", "Moderation", "POST", "/v1/moderations", "moderations_v1_moderations_post",
        body="json", client="moderation.moderate", implemented=True, request=classifiers.ClassificationRequest,
        response=classifiers.ModerationResponse, upstream="classifier", batchable=True),
    _op("chat_moderations", "Chat Moderations", "Moderation", "POST", "/v1/chat/moderations",
        "chat_moderations_v1_chat_moderations_post", body="json", client="moderation.moderate_chat",
        implemented=True, request=classifiers.ChatModerationRequest, response=classifiers.ModerationResponse,
        upstream="classifier", batchable=True),
    _op("classifications", "Classifications", "Classification", "POST", "/v1/classifications",
        "classifications_v1_classifications_post", body="json", client="classification.classify",
        implemented=True, request=classifiers.ClassificationRequest, response=classifiers.ClassificationResponse,
        upstream="classifier", batchable=True),
    _op("chat_classifications", "Chat Classifications", "Classification", "POST", "/v1/chat/classifications",
        "chat_classifications_v1_chat_classifications_post", body="json", client="classification.classify_chat",
        implemented=True, request=classifiers.ChatClassificationRequest,
        response=classifiers.ClassificationResponse, upstream="classifier", batchable=True),
    # OCR and audio
    _op("ocr", "OCR", "OCR", "POST", "/v1/ocr", "ocr_v1_ocr_post", body="json", client="ocr.process",
        implemented=True, request=ocr.OCRRequest, response=ocr.OCRResponse, upstream="ocr",
        batchable=True),
    _op("create_transcription", "Create Transcription", "Audio", "POST", "/v1/audio/transcriptions",
        "audio_api_v1_transcriptions_post", body="multipart", twin="create_streaming_transcription",
        client="audio.transcribe", implemented=True, request=audio.TranscriptionRequest,
        response=audio.TranscriptionResponse, batchable=True),
    _op("create_streaming_transcription", "Create Streaming Transcription", "Audio", "POST",
        "/v1/audio/transcriptions", "audio_api_v1_transcriptions_post_stream", body="multipart", stream="always",
        twin="create_transcription", client="audio.transcribe_stream", implemented=True,
        request=audio.TranscriptionStreamRequest, chunk=audio.TranscriptionEvent),
    # Conversations
    _op("create_conversation", "Create Conversation", "Conversations", "POST", "/v1/conversations",
        "agents_api_v1_conversations_start", body="json", stream="optional", implemented=True,
        request=conversations.ConversationRequest, response=conversations.ConversationResponse,
        chunk=conversations.ConversationEvent),
    _op("list_conversations", "List Conversations", "Conversations", "GET", "/v1/conversations",
        "agents_api_v1_conversations_list", implemented=True, query=conversations.ConversationListQuery,
        response=conversations.ConversationsList),
    _op("get_conversation", "Get Conversation", "Conversations", "GET", "/v1/conversations/{conversation_id}",
        "agents_api_v1_conversations_get", implemented=True, response=conversations.Conversation),
    _op("update_conversation", "Update Conversation", "Conversations", "POST", "/v1/conversations/{conversation_id}",
        "agents_api_v1_conversations_append", body="json", stream="optional", implemented=True,
        request=conversations.ConversationAppendRequest, response=conversations.ConversationResponse,
        chunk=conversations.ConversationEvent),
    _op("delete_conversation", "Delete Conversation", "Conversations", "DELETE",
        "/v1/conversations/{conversation_id}", "agents_api_v1_conversations_delete", status=204, implemented=True),
    _op("get_conversation_history", "Get Conversation History", "Conversations", "GET",
        "/v1/conversations/{conversation_id}/history", "agents_api_v1_conversations_history", implemented=True,
        response=conversations.ConversationHistory),
    _op("get_conversation_messages", "Get Conversation Messages", "Conversations", "GET",
        "/v1/conversations/{conversation_id}/messages", "agents_api_v1_conversations_messages", implemented=True,
        response=conversations.ConversationMessages),
    _op("restart_conversation", "Restart Conversation", "Conversations", "POST",
        "/v1/conversations/{conversation_id}/restart", "agents_api_v1_conversations_restart", body="json",
        stream="optional", implemented=True, request=conversations.ConversationRestartRequest,
        response=conversations.ConversationResponse, chunk=conversations.ConversationEvent),
    # Libraries
    _op("list_libraries", "List Libraries", "Libraries", "GET", "/v1/libraries", "libraries_list_v1"),
    _op("create_library", "Create Library", "Libraries", "POST", "/v1/libraries", "libraries_create_v1", body="json",
        status=201),
    _op("get_library", "Get Library", "Libraries", "GET", "/v1/libraries/{library_id}", "libraries_get_v1"),
    _op("update_library", "Update Library", "Libraries", "PUT", "/v1/libraries/{library_id}", "libraries_update_v1",
        body="json"),
    _op("delete_library", "Delete Library", "Libraries", "DELETE", "/v1/libraries/{library_id}",
        "libraries_delete_v1"),
    _op("list_library_documents", "List Library Documents", "Libraries", "GET",
        "/v1/libraries/{library_id}/documents", "libraries_documents_list_v1"),
    _op("create_library_document", "Create Library Document", "Libraries", "POST",
        "/v1/libraries/{library_id}/documents", "libraries_documents_upload_v1", body="multipart", status=201),
    _op("get_library_document", "Get Library Document", "Libraries", "GET",
        "/v1/libraries/{library_id}/documents/{document_id}", "libraries_documents_get_v1"),
    _op("delete_library_document", "Delete Library Document", "Libraries", "DELETE",
        "/v1/libraries/{library_id}/documents/{document_id}", "libraries_documents_delete_v1", status=204),
)
