FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY online_models online_models
COPY schemas schemas
COPY api api
RUN pip install --no-cache-dir .
ENV CRM_API_HOST=0.0.0.0
ENTRYPOINT ["crmstream"]
