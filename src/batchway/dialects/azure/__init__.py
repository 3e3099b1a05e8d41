"""Azure OpenAI's wire: the ``api-version`` parameter, the deployment routes and the errors
Azure answers with. Its Files and Batches objects and batch lines are OpenAI's."""
